"""The table of op specs that drives the op tests (tests/autograd/test_ops.py).

Each `OpSpec` names a registered Function and gives: a hypothesis strategy drawing the op's
array inputs and keyword params, the op called on tensors, and a plain-NumPy reference. Every
Function registered by the `autograd` package must appear here (a test enforces it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import autograd as ag
from autograd.ops import elementwise as E
from autograd.ops import linalg as L
from autograd.ops import reduce as R
from autograd.ops import shape as S
from autograd.testing import strategies as ags


@dataclass
class OpSpec:
    op: type  # the Function subclass under test
    draw: Callable  # draw(data) -> (arrays tuple, params dict)
    fn: Callable  # fn(*tensors, **params) -> Tensor
    ref: Callable  # ref(*arrays, **params) -> ndarray
    nonsmooth: bool = False  # finite differences need inputs away from kinks (handled by draw)


SPECS: list[OpSpec] = []


def spec(op, fn, ref, draw, **kw):
    SPECS.append(OpSpec(op, draw, fn, ref, **kw))


# ---- drawing helpers -------------------------------------------------------------------------
def unary(low=-2.0, high=2.0, kinks=()):
    def draw(data):
        shape = data.draw(ags.shapes())
        return (data.draw(ags.arrays(shape, low, high, kinks=kinks)),), {}

    return draw


def binary(low=-2.0, high=2.0, low_b=None, high_b=None):
    def draw(data):
        sa, sb = data.draw(ags.broadcastable_shapes(2))
        a = data.draw(ags.arrays(sa, low, high))
        b = data.draw(ags.arrays(sb, low if low_b is None else low_b,
                                 high if high_b is None else high_b))
        return (a, b), {}

    return draw


def with_axis(make_array=lambda data, shape: data.draw(ags.arrays(shape)), **extra):
    def draw(data):
        shape = data.draw(ags.shapes())
        axis = data.draw(ags.axes(len(shape)))
        params = {"axis": axis, "keepdims": data.draw(st.booleans())}
        params.update({k: data.draw(v) for k, v in extra.items()})
        return (make_array(data, shape),), params

    return draw


def distinct(data, shape):
    return data.draw(ags.distinct_arrays(shape))


def separated_pair(data):
    """Two broadcastable arrays whose elements never tie (maximum/minimum kinks)."""
    sa, sb = data.draw(ags.broadcastable_shapes(2))
    a = data.draw(ags.arrays(sa))
    b = data.draw(ags.arrays(sb))
    diff = np.broadcast_arrays(a, b)
    close = np.abs(diff[0] - diff[1]) < 0.05
    if close.any():
        b = b + 0.2  # shift b: ties (and near-ties) become clear winners
    return (a, b), {}


# ---- element-wise ----
spec(E.Add, lambda a, b: a + b, np.add, binary())
spec(E.Sub, lambda a, b: a - b, np.subtract, binary())
spec(E.Mul, lambda a, b: a * b, np.multiply, binary())
spec(E.Div, lambda a, b: a / b, np.divide, binary(low_b=0.5, high_b=2.0))
spec(E.Neg, lambda a: -a, np.negative, unary())
spec(E.Pow, lambda a, b: a**b, np.power, binary(low=0.3, high=2.0))
spec(E.PowScalar, lambda a, exponent: a**exponent, lambda a, exponent: a**exponent,
     lambda data: ((data.draw(ags.arrays(ags.shapes(), 0.3, 2.0)),),
                   {"exponent": data.draw(st.sampled_from([0, 1, 2, 3, 0.5, -1.5, 2.5]))}))
spec(E.Exp, lambda a: a.exp(), np.exp, unary())
spec(E.Log, lambda a: a.log(), np.log, unary(0.2, 3.0))
spec(E.Sqrt, lambda a: a.sqrt(), np.sqrt, unary(0.2, 3.0))
spec(E.Tanh, lambda a: a.tanh(), np.tanh, unary())
spec(E.Sigmoid, lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), unary(-6, 6))
spec(E.Relu, lambda a: a.relu(), lambda a: np.maximum(a, 0), unary(kinks=(0.0,)),
     nonsmooth=True)
spec(E.Gelu, lambda a: a.gelu(),
     lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))), unary(-4, 4))
spec(E.Silu, lambda a: a.silu(), lambda a: a / (1 + np.exp(-a)), unary(-4, 4))
spec(E.Abs, lambda a: a.abs(), np.abs, unary(kinks=(0.0,)), nonsmooth=True)
spec(E.Maximum, lambda a, b: a.maximum(b), np.maximum, separated_pair, nonsmooth=True)
spec(E.Minimum, lambda a, b: a.minimum(b), np.minimum, separated_pair, nonsmooth=True)
spec(E.Clip, lambda a, lo, hi: a.clip(lo, hi), lambda a, lo, hi: np.clip(a, lo, hi),
     lambda data: ((data.draw(ags.arrays(ags.shapes(), kinks=(-0.5, 0.7))),),
                   {"lo": data.draw(st.sampled_from([-0.5, None])),
                    "hi": data.draw(st.sampled_from([0.7, None]))}),
     nonsmooth=True)


def _draw_where(data):
    sc, sa, sb = data.draw(ags.broadcastable_shapes(3))
    cond = data.draw(ags.arrays(sc)) > 0
    return (cond, data.draw(ags.arrays(sa)), data.draw(ags.arrays(sb))), {}


spec(E.Where, lambda c, a, b: ag.where(c, a, b), np.where, _draw_where)
# A cast to the same dtype still runs Cast forward and backward (a float32 round trip would
# make finite differences meaningless).
spec(E.Cast, lambda a: E.Cast.apply(a, dtype=np.float64), lambda a: a, unary())

# ---- reductions ------------------------------------------------------------------------------
spec(R.Sum, lambda a, axis, keepdims: a.sum(axis, keepdims=keepdims),
     lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims), with_axis())
spec(R.Mean, lambda a, axis, keepdims: a.mean(axis, keepdims=keepdims),
     lambda a, axis, keepdims: np.mean(a, axis=axis, keepdims=keepdims), with_axis())


def _draw_var(data):
    shape = data.draw(ags.shapes(min_dims=1, min_side=2))
    axis = data.draw(ags.axes(len(shape)))
    params = {"axis": axis, "keepdims": data.draw(st.booleans()),
              "ddof": data.draw(st.sampled_from([0, 1]))}
    return (data.draw(ags.arrays(shape)),), params


spec(R.Var, lambda a, axis, keepdims, ddof: a.var(axis, ddof=ddof, keepdims=keepdims),
     lambda a, axis, keepdims, ddof: np.var(a, axis=axis, keepdims=keepdims, ddof=ddof), _draw_var)
spec(R.Max, lambda a, axis, keepdims: a.max(axis, keepdims=keepdims),
     lambda a, axis, keepdims: np.max(a, axis=axis, keepdims=keepdims), with_axis(distinct))
spec(R.Min, lambda a, axis, keepdims: a.min(axis, keepdims=keepdims),
     lambda a, axis, keepdims: np.min(a, axis=axis, keepdims=keepdims), with_axis(distinct))
spec(R.LogSumExp, lambda a, axis, keepdims: a.logsumexp(axis, keepdims=keepdims),
     lambda a, axis, keepdims: np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims)),
     with_axis())


# ---- shape -----------------------------------------------------------------------------------
def _draw_reshape(data):
    shape = data.draw(ags.shapes())
    size = int(np.prod(shape))
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    first = data.draw(st.sampled_from(divisors))
    new = data.draw(st.sampled_from([(size,), (first, size // first), (size // first, -1, 1)]))
    return (data.draw(ags.arrays(shape)),), {"shape": new}


spec(S.Reshape, lambda a, shape: a.reshape(shape), lambda a, shape: a.reshape(shape), _draw_reshape)


def _draw_transpose(data):
    shape = data.draw(ags.shapes())
    axes = data.draw(st.one_of(st.none(), st.permutations(range(len(shape))).map(tuple)))
    return (data.draw(ags.arrays(shape)),), {"axes": axes}


spec(S.Transpose, lambda a, axes: a.transpose(axes) if axes is not None else a.T,
     lambda a, axes: np.transpose(a, axes), _draw_transpose)


def _draw_broadcast(data):
    small, big = data.draw(ags.broadcastable_shapes(2))
    target = np.broadcast_shapes(small, big)
    return (data.draw(ags.arrays(small)),), {"shape": target}


spec(S.BroadcastTo, lambda a, shape: a.broadcast_to(shape),
     lambda a, shape: np.broadcast_to(a, shape), _draw_broadcast)


def _draw_getitem(data):
    shape = data.draw(ags.shapes(min_dims=1, max_dims=3, max_side=5))
    a = data.draw(ags.arrays(shape))
    kind = data.draw(st.sampled_from(["slice", "int", "ints", "mask", "mixed"]))
    n = shape[0]
    if kind == "slice":
        start = data.draw(st.integers(-n, n))
        step = data.draw(st.sampled_from([1, 2, -1]))
        index = slice(start, None, step)
    elif kind == "int":
        index = data.draw(st.integers(-n, n - 1))
    elif kind == "ints":  # repeats on purpose: their gradients must add up
        index = np.asarray(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6)))
    elif kind == "mask":
        index = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    else:
        index = (Ellipsis, np.asarray(data.draw(
            st.lists(st.integers(0, shape[-1] - 1), min_size=1, max_size=4))))
    return (a,), {"index": index}


spec(S.GetItem, lambda a, index: a[index], lambda a, index: a[index], _draw_getitem)


def _draw_pieces(data):
    shape = data.draw(ags.shapes(min_dims=1))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    count = data.draw(st.integers(1, 3))
    pieces = []
    for _ in range(count):
        s = list(shape)
        s[axis] = data.draw(st.integers(1, 3))
        pieces.append(data.draw(ags.arrays(tuple(s))))
    return tuple(pieces), {"axis": axis}


def _draw_stackable(data):
    shape = data.draw(ags.shapes())
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    count = data.draw(st.integers(1, 3))
    return tuple(data.draw(ags.arrays(shape)) for _ in range(count)), {"axis": axis}


spec(S.Concatenate, lambda *xs, axis: ag.concatenate(xs, axis),
     lambda *xs, axis: np.concatenate(xs, axis), _draw_pieces)
spec(S.Stack, lambda *xs, axis: ag.stack(xs, axis), lambda *xs, axis: np.stack(xs, axis),
     _draw_stackable)
spec(S.ToDevice, lambda a: S.ToDevice.apply(a, device="cpu"), lambda a: a, unary())


# ---- linear algebra --------------------------------------------------------------------------
def _draw_matmul(data):
    sa, sb = data.draw(ags.matmul_shapes())
    return (data.draw(ags.arrays(sa)), data.draw(ags.arrays(sb))), {}


spec(L.MatMul, lambda a, b: a @ b, np.matmul, _draw_matmul)
