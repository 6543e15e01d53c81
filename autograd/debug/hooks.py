"""Hooks: small functions the engine calls while it works, to look at (or change) what flows.

Two kinds exist.

Tensor hooks (on one tensor, part of `Tensor`):
    h = z.register_hook(fn)   # fn(grad) is called once z's gradient is complete; a non-None
                              # return value replaces the gradient that flows on
    h.remove()
    z.retain_grad()           # keep z.grad after backward, though z is an intermediate

Op hooks (on every op, in `autograd.function.forward_hooks` / `backward_hooks`), wrapped here:
    with op_hooks(forward=f, backward=b):   # f(op, ctx, inputs, output) after each forward,
        ...                                 # b(op, ctx, grad, input_grads) after each backward
    with print_ops():                       # prints one line per forward and backward call
        ...
    with time_ops() as timer:               # time spent per op, forward and backward
        ...
    print(timer)

and `print_grad(label)` is a ready-made tensor hook that prints the gradient passing by;
`retain_grads(loss)` calls `retain_grad()` on every intermediate of a graph at once.
"""

from __future__ import annotations

import time

from autograd import function
from autograd.debug._format import Namer, arg_names, fmt_array, fmt_params, fmt_shape, walk


class op_hooks:
    """Register op-level hooks; remove them with `remove()` or by leaving a `with` block.

    forward(op, ctx, inputs, output) runs after every op's forward: `op` is the Function
    subclass, `ctx.params` its keyword arguments, `inputs` and `output` tensors.
    backward(op, ctx, grad, input_grads) runs after every op's backward: `grad` is the incoming
    gradient array, `input_grads` what the op returned (before the engine sums broadcast axes).
    Hooks should only look; the arrays belong to the engine.
    """

    def __init__(self, forward=None, backward=None):
        self.forward, self.backward = forward, backward
        if forward is not None:
            function.forward_hooks.append(forward)
        if backward is not None:
            function.backward_hooks.append(backward)

    def remove(self):
        if self.forward is not None and self.forward in function.forward_hooks:
            function.forward_hooks.remove(self.forward)
        if self.backward is not None and self.backward in function.backward_hooks:
            function.backward_hooks.remove(self.backward)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class print_ops(op_hooks):
    """Print a line for every forward and every backward call, as they happen:

        forward  mul_0 = mul(w, x)                        -> scalar 1.2
        forward  mul_1 = mul(mul_0, mul_0)                -> scalar 1.44
        backward mul_1: grad in scalar 1                  -> a: scalar 1.2, b: scalar 1.2
        backward mul_0: grad in scalar 2.4                -> a: scalar 3.6, b: scalar 1.92

    Backward lines show what each op returned for its arguments (a, b, ...), before the engine
    sums them over broadcast axes and adds up contributions to the same tensor.
    """

    def __init__(self, file=None, max_elements=4):
        self.names = Namer()
        self.by_ctx = {}  # id(ctx) -> (ctx, label of the op's output), to name backward calls
        self.file, self.max_elements = file, max_elements
        super().__init__(forward=self._forward, backward=self._backward)

    def _print(self, text):
        print(text, file=self.file)

    def _forward(self, op, ctx, inputs, output):
        ins = ", ".join(self.names(t) for t in inputs)
        params = fmt_params(ctx.params)
        label = self.names(output)
        self.by_ctx[id(ctx)] = (ctx, label)
        call = f"{label} = {op.name}({ins}{', ' + params if params else ''})"
        self._print(f"forward  {call:<40} -> {_short(output.data, self.max_elements)}")

    def _backward(self, op, ctx, grad, input_grads):
        entry = self.by_ctx.get(id(ctx))
        label = entry[1] if entry is not None and entry[0] is ctx else op.name
        names = arg_names(op, len(input_grads))
        sent = ", ".join(f"{a}: {_short(g, self.max_elements)}"
                         for a, g in zip(names, input_grads) if g is not None)
        head = f"{label}: grad in {_short(grad, self.max_elements)}"
        self._print(f"backward {head:<40} -> {sent}")


def _short(arr, max_elements):
    return ("scalar " if arr.ndim == 0 else fmt_shape(arr.shape) + " ") + fmt_array(
        arr, max_elements)


class time_ops(op_hooks):
    """Add up the time spent in each op, forward and backward.

    The op hooks run *after* each call, so the time charged to an op is the time since the
    previous hook call: the op itself plus the little Python work between two ops. That is
    precise enough to find the op that dominates. On a GPU, ops run asynchronously: synchronise
    the device before trusting these numbers (CuPy: cupy.cuda.Device().synchronize()).
    """

    def __init__(self):
        self.totals = {}  # (phase, op name) -> [calls, seconds]
        self._last = time.perf_counter()
        super().__init__(forward=self._forward, backward=self._backward)

    def _charge(self, phase, op):
        now = time.perf_counter()
        entry = self.totals.setdefault((phase, op.name), [0, 0.0])
        entry[0] += 1
        entry[1] += now - self._last
        self._last = now

    def _forward(self, op, ctx, inputs, output):
        self._charge("forward", op)

    def _backward(self, op, ctx, grad, input_grads):
        self._charge("backward", op)

    def __enter__(self):
        self._last = time.perf_counter()
        return self

    def rows(self):
        """(phase, op, calls, seconds), slowest first."""
        rows = [(phase, name, n, s) for (phase, name), (n, s) in self.totals.items()]
        return sorted(rows, key=lambda r: -r[3])

    def __str__(self):
        lines = [f"{'phase':<9} {'op':<16} {'calls':>6} {'ms':>10}"]
        for phase, name, n, s in self.rows():
            lines.append(f"{phase:<9} {name:<16} {n:>6} {s * 1e3:>10.3f}")
        return "\n".join(lines)


def print_grad(label="grad", file=None, max_elements=8):
    """A tensor hook that prints the gradient passing through and leaves it unchanged:
    `z.register_hook(print_grad("z"))`."""

    def hook(grad):
        print(f"{label}: {_short(grad, max_elements)}", file=file)

    return hook


def retain_grads(tensor):
    """Call `retain_grad()` on every intermediate tensor that `tensor` was computed from (and
    on `tensor` itself), so that after backward each one shows its gradient, in `to_dot`
    pictures too. Returns the intermediates, in forward order."""
    kept = [t for t in walk(tensor) if t._node is not None]
    for t in kept:
        t.retain_grad()
    return kept
