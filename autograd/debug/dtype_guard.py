"""`check_dtypes()`: stop at the first op whose output silently changes the float dtype.

NumPy promotes quietly: a float32 array times a float64 array is float64, and float64 arrays
are easy to make by accident (`np.linspace`, `np.full`, `np.zeros` and `np.arange(...) / n` all
default to it). Between *tensors* the engine already refuses this: every op's `apply` rejects
inputs of different float dtypes with a TypeError naming the op, the inputs and their dtypes
(autograd/function.py), and Python or NumPy scalars take the tensor's dtype. What slips through
is a float64 value created *inside* an op: a constant array, a NumPy default. Nothing fails: the
model just runs at half speed with twice the memory from that op on. Inside

    with check_dtypes():
        loss = model(x, y)
        loss.backward()

the first op whose forward output has a float dtype different from its float inputs' raises
`DtypeError`, naming the op, the dtypes and the line of *your* code that called it:

    DtypeError: upcast turned float32 inputs into a float64 output (inputs: a float32 (4, 8);
    output float64 (4, 8)); the op was called at train.py:12 in step: y = Upcast.apply(x)

A downcast (an op computing in float32 whatever its input) is reported the same way. Only
float (and complex) inputs count: integer ids, boolean masks and targets may sit next to float32
data. `Tensor.astype` (the `Cast` op) changes the dtype on purpose and is never reported; pass
`allow=` more op classes (or names) to exempt your own.

Gradients need no guard: the engine already insists that every gradient has its input's dtype.
It works as a decorator too: `@check_dtypes` or `@check_dtypes(allow=...)`.
"""

from __future__ import annotations

import contextlib

from autograd import function
from autograd.debug._format import arg_names, fmt_frame, fmt_shape, user_frame


class DtypeError(TypeError):
    """An op changed the float dtype. Attributes: `op` (its name), `input_dtypes` (one per
    input, as strings), `output_dtype` and `called_at` (a traceback.FrameSummary or None)."""

    def __init__(self, message, op, input_dtypes, output_dtype, called_at):
        super().__init__(message)
        self.op, self.input_dtypes = op, input_dtypes
        self.output_dtype, self.called_at = output_dtype, called_at


def _is_float(dtype) -> bool:
    return dtype.kind in "fc"


class check_dtypes(contextlib.ContextDecorator):
    """Raise `DtypeError` the first time an op's forward output has a float dtype different
    from its float inputs'; see the module doc. `allow`: op classes or names never checked
    (`Cast` always is). Blocks may nest; each installs its own forward hook."""

    def __new__(cls, fn=None, *, allow=()):
        self = super().__new__(cls)
        if callable(fn):  # used bare, as @check_dtypes
            self.__init__(allow=allow)
            return self(fn)
        return self

    def __init__(self, fn=None, *, allow=()):
        from autograd.ops.elementwise import Cast

        self.allowed = {Cast.name} | {a if isinstance(a, str) else a.name for a in allow}

    def _check(self, op, ctx, inputs, output):
        if op.name in self.allowed or not _is_float(output.dtype):
            return
        floats = {t.dtype for t in inputs if _is_float(t.dtype)}
        if not floats or floats == {output.dtype}:
            return
        where = user_frame(skip=2)
        names = arg_names(op, len(inputs))
        shown = ", ".join(f"{n} {t.dtype} {fmt_shape(t.shape)}" for n, t in zip(names, inputs))
        ins = "/".join(sorted(str(d) for d in floats))
        kind = "mixed " if len(floats) > 1 else ""
        raise DtypeError(
            f"{op.name} turned {kind}{ins} inputs into a {output.dtype} output (inputs: {shown}; "
            f"output {output.dtype} {fmt_shape(output.shape)}); the op was called at "
            f"{fmt_frame(where)}\n  hint: {_hint(floats, output.dtype)}",
            op.name, [str(t.dtype) for t in inputs], str(output.dtype), where)

    def __enter__(self):
        function.forward_hooks.append(self._check)
        return self

    def __exit__(self, *exc):
        if self._check in function.forward_hooks:
            function.forward_hooks.remove(self._check)
        return False


def _hint(floats, out):
    if len(floats) > 1:
        return ("one input has a different float dtype from the others: make it with the same "
                "dtype (e.g. ag.tensor(x, dtype=np.float32)) or cast it with .astype()")
    if out.itemsize > max(d.itemsize for d in floats):
        return ("a float64 value crept in inside the op: a NumPy float64 scalar or array, or a "
                "default-dtype np.zeros/np.arange; use Python floats or arrays of the input's dtype")
    return "the op computed in a narrower dtype than its inputs: keep the input's dtype"
