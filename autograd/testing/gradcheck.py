"""`gradcheck`: compare every hand-written backward with finite differences, in float64.

The check is a vector-Jacobian product test. With a random cotangent `u` (never all ones: a
broken softmax passes a ones-check because sum(softmax(x)) is constant) the scalar
L(x) = sum(u * f(x)) has gradient dL/dx = VJP(u), which is exactly what backward computes. For a
random direction v, the central difference (L(x + eps v) - L(x - eps v)) / 2 eps must equal
sum(dL/dx * v). Small inputs are checked along every coordinate (the full VJP), larger ones along
a few random directions. On a failure the checker searches element by element for the worst
entry, and re-checks each op of the graph alone to name the one whose backward is wrong.
"""

from __future__ import annotations

import numpy as np

from autograd.backend import asnumpy
from autograd.function import forward_hooks
from autograd.grad_mode import no_grad
from autograd.tensor import Tensor


class GradcheckError(AssertionError):
    """A backward disagreed with finite differences. Attributes: op, input_index, index,
    analytic, numeric, seed."""

    def __init__(self, op, input_index, index, analytic, numeric, seed, tolerance):
        self.op, self.input_index, self.index = op, input_index, index
        self.analytic, self.numeric, self.seed = analytic, numeric, seed
        where = f"element {index}" if index is not None else "a random direction"
        super().__init__(
            f"gradcheck failed for op '{op}': input {input_index} at {where}: analytic "
            f"{analytic:.6g} vs numeric {numeric:.6g} (difference {abs(analytic - numeric):.3g}, "
            f"tolerance {tolerance:.3g}); seed {seed}"
        )


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-6, rtol=1e-4, seed=0, n_directions=3,
              full_check_size=64, raise_exception=True):
    """Check the gradients of `fn(*inputs)` against central finite differences.

    `inputs` are arrays or tensors; float ones are converted to float64 and differentiated
    (a tensor given with requires_grad=False stays a constant), others (integer ids, boolean
    masks) are passed as they are. Returns True, or raises `GradcheckError` (or returns False
    when `raise_exception=False`).
    """
    rng = np.random.default_rng(seed)
    leaves = [_as_input(x) for x in inputs]
    out = fn(*leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    cotangent = rng.standard_normal(out.shape) + 0.5  # random, never all ones
    out.backward(_like(cotangent, out.data))
    wrt = [i for i, t in enumerate(leaves) if t.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no float input to differentiate")

    def objective(values):
        args = [Tensor(values[i]) if i in values else leaves[i] for i in range(len(leaves))]
        with no_grad():
            return float(np.sum(asnumpy(fn(*args).data) * cotangent))

    try:
        for i in wrt:
            grad = np.zeros(leaves[i].shape) if leaves[i].grad is None else asnumpy(leaves[i].grad)
            _check_input(objective, leaves[i].data, i, grad, rng, eps, atol, rtol, seed,
                         n_directions, full_check_size, op=_op_names(fn, leaves))
    except GradcheckError as err:
        if not raise_exception:
            return False
        culprit = _find_culprit(fn, inputs, eps, atol, rtol, seed)
        if culprit is not None and culprit != err.op:
            err.args = (err.args[0] + f"\n  the op whose own backward fails alone: '{culprit}'",)
            err.op = culprit
        raise
    return True


def _as_input(x):
    if isinstance(x, Tensor):
        if x.dtype.kind == "f" and x.requires_grad:
            return Tensor(x.data.astype(np.float64, copy=False), requires_grad=True)
        return Tensor(x.data)
    arr = x if hasattr(x, "dtype") else np.asarray(x)
    if arr.dtype.kind == "f":
        return Tensor(arr.astype(np.float64, copy=False), requires_grad=True)
    return Tensor(arr)


def _like(arr, ref):
    """`arr` on the device of `ref`."""
    from autograd.backend import get_array_module

    return get_array_module(ref).asarray(arr)


def _check_input(objective, x, i, grad, rng, eps, atol, rtol, seed, n_dirs, full_size, op):
    x_host = asnumpy(x)

    def numeric_along(v):
        up = objective({i: _like(x_host + eps * v, x)})
        down = objective({i: _like(x_host - eps * v, x)})
        return (up - down) / (2 * eps), max(abs(up), abs(down))

    def tolerance(a, n, scale):
        return atol * max(1.0, scale) + rtol * max(abs(a), abs(n))

    if x_host.size <= full_size:
        directions = [(idx, _unit(x_host.shape, idx)) for idx in np.ndindex(x_host.shape)]
    else:
        directions = [(None, rng.standard_normal(x_host.shape)) for _ in range(n_dirs)]
    for idx, v in directions:
        numeric, scale = numeric_along(v)
        analytic = float(np.sum(grad * v))
        if not abs(analytic - numeric) <= tolerance(analytic, numeric, scale):
            if idx is None:  # find the worst element to report
                idx, analytic, numeric = _worst_element(numeric_along, grad, x_host.shape)
            raise GradcheckError(op, i, idx, analytic, numeric, seed,
                                 tolerance(analytic, numeric, scale))


def _unit(shape, idx):
    v = np.zeros(shape)
    v[idx] = 1.0
    return v


def _worst_element(numeric_along, grad, shape, limit=4096):
    worst = (None, 0.0, 0.0, -1.0)
    for k, idx in enumerate(np.ndindex(shape)):
        if k >= limit:
            break
        numeric, _ = numeric_along(_unit(shape, idx))
        diff = abs(grad[idx] - numeric)
        if diff > worst[3]:
            worst = (idx, float(grad[idx]), numeric, diff)
    return worst[:3]


def _op_names(fn, leaves):
    """The ops `fn` runs, as one label: the op's name when there is one, else 'a, b, ...'."""
    names = []

    def record(op, ctx, inputs, output):
        if op.name not in names:
            names.append(op.name)

    forward_hooks.append(record)
    try:
        fn(*leaves)
    finally:
        forward_hooks.remove(record)
    return ", ".join(names) if names else getattr(fn, "__name__", "fn")


def _find_culprit(fn, inputs, eps, atol, rtol, seed):
    """Re-run `fn`, capture each op call, and gradcheck each op on its own inputs."""
    calls = []

    def record(op, ctx, op_inputs, output):
        needs = [t.requires_grad for t in op_inputs]
        calls.append((op, ctx.params, [t.data for t in op_inputs], needs))

    forward_hooks.append(record)
    try:
        fn(*[_as_input(x) for x in inputs])
    finally:
        forward_hooks.remove(record)
    if len({op for op, *_ in calls}) <= 1:
        return None
    for op, params, arrays, needs in calls:
        args = [Tensor(a, requires_grad=n) for a, n in zip(arrays, needs)]
        if not any(needs):
            continue
        try:
            gradcheck(lambda *xs, op=op, params=params: op.apply(*xs, **params), *args,
                      eps=eps, atol=atol, rtol=rtol, seed=seed)
        except GradcheckError:
            return op.name
    return None
