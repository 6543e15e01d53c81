"""`detect_anomaly()`: stop at the first NaN or infinity, and say which op made it and where.

A NaN in a loss is usually born many ops earlier (a log of a negative number, 0 * inf, a sqrt
differentiated at 0) and then spreads through everything after it. Inside

    with detect_anomaly():
        loss = model(x)
        loss.backward()

every op's output and every gradient an op produces is checked, and the first non-finite value
raises `AnomalyError`, naming the op and the line of *your* code that created it:

    AnomalyError: log produced nan in its forward output (1 of 3 values), from inputs without
    nan; the op was created at train.py:12 in step: y = x.log()

"First" means new: an op is blamed when its result has a NaN (or an infinity) that its inputs
did not have. Values that only pass a NaN or infinity along are not blamed, and deliberate
infinities, like the -inf of an attention mask, pass through ops that turn them into plain
numbers (exp(-inf) = 0) without complaint.

Checking costs a pass over every array and a look at the Python stack for every op: use it to
find a bug, not in every training run.
"""

from __future__ import annotations

import contextlib

from autograd import function
from autograd.backend import get_array_module
from autograd.debug._format import fmt_frame, user_frame


class AnomalyError(RuntimeError):
    """A NaN or infinity appeared. Attributes: `op` (the op's name), `phase` ("forward" or
    "backward"), `kind` ("nan" or "inf") and `created_at` (a traceback.FrameSummary or None)."""

    def __init__(self, message, op, phase, kind, created_at):
        super().__init__(message)
        self.op, self.phase, self.kind, self.created_at = op, phase, kind, created_at


_depth = 0  # how many detect_anomaly blocks are open (they may nest)


def is_anomaly_enabled() -> bool:
    return _depth > 0


def _bad(arr):
    """(number of NaNs, number of infinities) in a float array; (0, 0) for other arrays."""
    if not hasattr(arr, "dtype") or arr.dtype.kind not in "fc":
        return 0, 0
    xp = get_array_module(arr)
    if bool(xp.isfinite(arr).all()):  # the common case: one pass, nothing to report
        return 0, 0
    return int(xp.isnan(arr).sum()), int(xp.isinf(arr).sum())


def _new_kind(produced, given):
    """The non-finite kind ("nan" or "inf") that `produced` has and none of the `given` arrays
    had, with how many such values it has; (None, 0) when there is nothing new."""
    nans, infs = _bad(produced)
    if not nans and not infs:
        return None, 0
    given_bad = [_bad(a) for a in given]
    if nans and not any(b[0] for b in given_bad):
        return "nan", nans
    if infs and not any(b[1] for b in given_bad):
        return "inf", infs
    return None, 0


def _forward_check(op, ctx, inputs, output):
    where = user_frame(skip=2)
    ctx.created_at = where  # the backward hook receives ctx, not the node
    if output._node is not None:
        output._node.created_at = where
    kind, count = _new_kind(output.data, [t.data for t in inputs])
    if kind:
        raise AnomalyError(
            f"{op.name} produced {kind} in its forward output ({count} of {output.size} "
            f"values), from inputs without {kind}; the op was created at {fmt_frame(where)}"
            f"{_hint(op, kind, 'forward')}",
            op.name, "forward", kind, where)


def _backward_check(op, ctx, grad, input_grads):
    for i, ig in enumerate(input_grads):
        if ig is None:
            continue
        kind, count = _new_kind(ig, [grad])
        if kind:
            where = getattr(ctx, "created_at", None)
            place = (fmt_frame(where) if where is not None else
                     "an unknown place (its forward ran outside detect_anomaly())")
            raise AnomalyError(
                f"the backward of {op.name} produced {kind} in the gradient for its input {i} "
                f"({count} of {ig.size} values), from an incoming gradient without {kind}; the "
                f"op was created at {place}{_hint(op, kind, 'backward')}",
                op.name, "backward", kind, where)


_HINTS = {
    ("log", "forward"): "log of a negative number is nan, log(0) = -inf: clip or add an eps",
    ("log", "backward"): "d(log a)/da = 1/a is infinite at a = 0",
    ("sqrt", "forward"): "sqrt of a negative number is nan",
    ("sqrt", "backward"): "d(sqrt a)/da = 1/(2 sqrt a) is infinite at a = 0: add an eps inside",
    ("div", "forward"): "division by zero gives inf (or nan for 0/0)",
    ("div", "backward"): "d(a/b)/db = -a/b^2 is infinite at b = 0",
    ("mul", "forward"): "0 * inf is nan",
    ("exp", "forward"): "exp overflows above ~88 in float32 (~709 in float64): subtract the max",
    ("sub", "forward"): "inf - inf is nan (for example a row of -inf minus its max of -inf)",
}


def _hint(op, kind, phase):
    hint = _HINTS.get((op.name, phase))
    return f"\n  hint: {hint}" if hint else ""


class detect_anomaly(contextlib.ContextDecorator):
    """Raise `AnomalyError` on the first NaN or infinity made by an op's forward or backward;
    see the module doc. Use as `with detect_anomaly():` or as a decorator. Blocks may nest;
    the checks are installed by the outermost one."""

    def __enter__(self):
        global _depth
        if _depth == 0:
            function.forward_hooks.append(_forward_check)
            function.backward_hooks.append(_backward_check)
        _depth += 1
        return self

    def __exit__(self, *exc):
        global _depth
        _depth -= 1
        if _depth == 0:
            function.forward_hooks.remove(_forward_check)
            function.backward_hooks.remove(_backward_check)
        return False
