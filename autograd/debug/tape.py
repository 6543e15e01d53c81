"""`tape()`: record the forward ops, in the order they run.

    with tape() as t:
        loss = ((x @ w + b).relu() ** 2).mean()
    print(t)

prints one line per op, like a tiny program in which every intermediate has a name:

    1  matmul_0 = matmul(a=x, b=w)               (4, 2) float32
    2  add_0 = add(a=matmul_0, b=b)              (4, 2) float32
    ...

Reverse-mode autodiff is often explained with exactly this picture: the forward pass writes a
tape of operations, and the backward pass reads it from the end. (This engine keeps the same
information as a graph hanging off each tensor; the tape is the same thing in time order.)

Recording works through the op-level forward hooks of `autograd.function`, so it also sees ops
that run under `no_grad()` (they are marked "no grad"). The tape keeps the tensors it saw alive
until it is discarded.
"""

from __future__ import annotations

from autograd import function
from autograd.debug._format import Namer, arg_names, fmt_params, fmt_shape


class TapeEntry:
    """One recorded op: `index` (from 1), `op` (the Function subclass), `params`, `inputs`,
    `output` and `recorded` (False when it ran without building a graph, e.g. under no_grad)."""

    __slots__ = ("index", "op", "params", "inputs", "output", "recorded")

    def __init__(self, index, op, params, inputs, output):
        self.index = index
        self.op = op
        self.params = dict(params)
        self.inputs = tuple(inputs)
        self.output = output
        self.recorded = output._node is not None

    def __repr__(self):
        return f"TapeEntry({self.index}, {self.op.name})"


class Tape:
    """The ops recorded inside a `with tape():` block. Iterate over it for `TapeEntry`s, or
    print it for one line per op. `ops()` lists just the op names."""

    def __init__(self):
        self.entries: list[TapeEntry] = []

    def _record(self, fn, ctx, inputs, output):
        self.entries.append(TapeEntry(len(self.entries) + 1, fn, ctx.params, inputs, output))

    def __enter__(self):
        function.forward_hooks.append(self._record)
        return self

    def __exit__(self, *exc):
        function.forward_hooks.remove(self._record)
        return False

    def __iter__(self):
        return iter(self.entries)

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, i):
        return self.entries[i]

    def ops(self) -> list[str]:
        """The op names in order, e.g. ['matmul', 'add', 'relu', 'powscalar', 'mean']."""
        return [e.op.name for e in self.entries]

    def lines(self) -> list[str]:
        """One line per op. Labels are given when printing, so names set after the block
        (`z.name = "z"`) show up."""
        names = Namer()
        calls = []
        for e in self.entries:
            ins = [names(t) for t in e.inputs]
            args = ins if len(ins) == 1 else [
                f"{a}={label}" for a, label in zip(arg_names(e.op, len(ins)), ins)]
            params = fmt_params(e.params)
            if params:
                args.append(params)
            call = f"{names(e.output, e.op.name)} = {e.op.name}({', '.join(args)})"
            out = e.output
            shape = fmt_shape(out.shape) if out.ndim else "scalar"
            note = "" if e.recorded else "  (no grad)"
            calls.append((e.index, call, f"{shape} {out.dtype}{note}"))
        width = max((len(c) for _, c, _ in calls), default=0)
        digits = len(str(len(calls)))
        return [f"{i:>{digits}}  {c:<{width}}  {s}" for i, c, s in calls]

    def __str__(self):
        return "\n".join(self.lines()) if self.entries else "(empty tape)"

    def __repr__(self):
        return f"<Tape of {len(self.entries)} ops>"


def tape() -> Tape:
    """A context manager that records every forward op run inside it; see the module doc."""
    return Tape()
