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
from hypothesis.extra import numpy as hnp

import autograd as ag
from autograd.ops import activations as ACT
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
    """Two broadcastable arrays whose elements never come within 0.06 of each other (the kink
    of maximum/minimum): a's values lie near multiples of 0.2, b's near odd multiples of 0.1."""
    sa, sb = data.draw(ags.broadcastable_shapes(2))

    def near_grid(shape, offset):
        grid = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-10, 10)))
        jitter = data.draw(ags.arrays(shape, -0.02, 0.02))
        return grid * 0.2 + offset + jitter

    return (near_grid(sa, 0.0), near_grid(sb, 0.1)), {}


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
spec(ACT.Tanh, lambda a: a.tanh(), np.tanh, unary())
spec(ACT.Sigmoid, lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), unary(-6, 6))
spec(ACT.Relu, lambda a: a.relu(), lambda a: np.maximum(a, 0), unary(kinks=(0.0,)),
     nonsmooth=True)
spec(ACT.Gelu, lambda a: a.gelu(),
     lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))), unary(-4, 4))
spec(ACT.Silu, lambda a: a.silu(), lambda a: a / (1 + np.exp(-a)), unary(-4, 4))
spec(E.Abs, lambda a: a.abs(), np.abs, unary(kinks=(0.0,)), nonsmooth=True)
spec(E.Maximum, lambda a, b: a.maximum(b), np.maximum, separated_pair, nonsmooth=True)
spec(E.Minimum, lambda a, b: a.minimum(b), np.minimum, separated_pair, nonsmooth=True)
def _np_clip(a, lo, hi):  # NumPy 1.x's np.clip refuses two None bounds
    return np.clip(a, -np.inf if lo is None else lo, np.inf if hi is None else hi)


spec(E.Clip, lambda a, lo, hi: a.clip(lo, hi), _np_clip,
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


# ---- neural-network ops (autograd/ops/nn.py, softmax.py, attention.py) ---------------------------
from autograd import functional as F  # noqa: E402
from autograd.ops import attention as A  # noqa: E402
from autograd.ops import lm_head as LH  # noqa: E402
from autograd.ops import nn as N  # noqa: E402
from autograd.ops import softmax as SM  # noqa: E402


def _np_softmax(x, axis=-1, mask=None):
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    return np.where(s > 0, e / np.where(s > 0, s, 1), 0)


def _draw_linear(data):
    lead = data.draw(ags.shapes(max_dims=2))
    n_in, n_out = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    arrays = (data.draw(ags.arrays((*lead, n_in))), data.draw(ags.arrays((n_in, n_out))))
    if data.draw(st.booleans()):
        arrays += (data.draw(ags.arrays((n_out,))),)
    return arrays, {}


spec(N.Linear, lambda x, w, b=None: F.linear(x, w, b),
     lambda x, w, b=None: x @ w + (0 if b is None else b), _draw_linear)


def _draw_embedding(data):
    num, dim = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3))
    ids = data.draw(ags.token_ids(ags.shapes(max_dims=2), num))
    return (ids, data.draw(ags.arrays((num, dim)))), {}


spec(N.Embedding, lambda ids, table: F.embedding(ids, table), lambda ids, table: table[ids],
     _draw_embedding)


def _draw_norm(with_beta):
    def draw(data):
        shape = data.draw(ags.shapes(min_dims=1, min_side=2))
        arrays = (data.draw(ags.arrays(shape)), data.draw(ags.arrays(shape[-1:], 0.5, 2.0)))
        if with_beta and data.draw(st.booleans()):
            arrays += (data.draw(ags.arrays(shape[-1:])),)
        return arrays, {}

    return draw


def _np_layer_norm(x, gamma, beta=None, eps=1e-5):
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return xhat * gamma + (0 if beta is None else beta)


spec(N.LayerNorm, lambda x, g, b=None: F.layer_norm(x, g, b), _np_layer_norm, _draw_norm(True))
spec(N.RMSNorm, lambda x, g: F.rms_norm(x, g),
     lambda x, g: x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * g, _draw_norm(False))


def _draw_dropout(data):
    x = data.draw(ags.arrays(ags.shapes()))
    p = data.draw(st.sampled_from([0.1, 0.5]))
    keep = np.asarray(data.draw(st.lists(st.booleans(), min_size=x.size, max_size=x.size)),
                      dtype=bool).reshape(x.shape)
    return (x,), {"keep": keep, "p": p}


spec(N.Dropout, lambda x, keep, p: N.Dropout.apply(x, keep=keep, p=p),
     lambda x, keep, p: x * keep / (1 - p), _draw_dropout)


def _np_rope(x, positions, base=10000.0):
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2) / d)
    ang = np.asarray(positions)[:, None] * inv
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                           x1 * np.sin(ang) + x2 * np.cos(ang)], axis=-1)


def _draw_rope(data):
    lead = data.draw(ags.shapes(max_dims=2))
    T, half = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    start = data.draw(st.integers(0, 50))
    x = data.draw(ags.arrays((*lead, T, 2 * half)))
    return (x,), {"positions": np.arange(start, start + T)}


spec(N.RotaryEmbedding, lambda x, positions: F.rotary_embedding(x, positions), _np_rope, _draw_rope)


def _draw_swiglu(data):
    lead = data.draw(ags.shapes(max_dims=2))
    n_in, hidden = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    return (data.draw(ags.arrays((*lead, n_in))), data.draw(ags.arrays((n_in, hidden))),
            data.draw(ags.arrays((n_in, hidden)))), {}


spec(N.SwiGLU, F.swiglu, lambda x, wg, wu: (x @ wg) / (1 + np.exp(-(x @ wg))) * (x @ wu),
     _draw_swiglu)


def _draw_masked(data):
    shape = data.draw(ags.shapes(min_dims=1))
    x = data.draw(ags.arrays(shape, -5.0, 5.0))
    mask = None
    if data.draw(st.booleans()):  # sometimes with fully masked rows
        mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=x.size, max_size=x.size)),
                          dtype=bool).reshape(shape)
    return (x,), {"axis": data.draw(st.integers(-len(shape), len(shape) - 1)), "mask": mask}


def _np_log_softmax(x, axis=-1, mask=None):
    y = _np_softmax(x, axis, mask)
    with np.errstate(divide="ignore"):
        out = np.log(y)
    return np.where(y > 0, out, 0) if mask is not None else out


spec(SM.Softmax, lambda x, axis, mask: F.softmax(x, axis, mask), _np_softmax, _draw_masked)
spec(SM.LogSoftmax, lambda x, axis, mask: F.log_softmax(x, axis, mask), _np_log_softmax,
     _draw_masked)


def _draw_ce(data):
    lead = data.draw(ags.shapes(min_dims=1, max_dims=2))
    V = data.draw(st.integers(1, 5))
    targets = data.draw(ags.token_ids(lead, V, repeats=False))
    ignored = np.asarray(data.draw(st.lists(st.booleans(), min_size=targets.size,
                                            max_size=targets.size))).reshape(lead)
    targets = np.where(ignored, -100, targets)
    return (data.draw(ags.arrays((*lead, V), -4.0, 4.0)), targets), {
        "label_smoothing": data.draw(st.sampled_from([0.0, 0.1]))}


def _np_ce(logits, targets, label_smoothing=0.0):
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    kept = targets != -100
    t = np.where(kept, targets, 0)
    nll = -np.take_along_axis(logp, t[..., None], -1)[..., 0]
    smooth = -logp.mean(-1)
    per = (1 - label_smoothing) * nll + label_smoothing * smooth
    return np.asarray((per * kept).sum() / max(kept.sum(), 1))


spec(SM.CrossEntropy, lambda l, t, label_smoothing: F.cross_entropy(
    l, t, label_smoothing=label_smoothing), _np_ce, _draw_ce)


def _draw_lm_head_ce(data):
    (logits, targets), params = _draw_ce(data)
    C = data.draw(st.integers(1, 3))
    x = data.draw(ags.arrays((*targets.shape, C), -2.0, 2.0))
    weight = data.draw(ags.arrays((logits.shape[-1], C), -2.0, 2.0))
    params["chunk_rows"] = data.draw(st.sampled_from([None, 1, 2]))  # several chunks, or one
    return (x, weight, targets), params


spec(LH.LMHeadCrossEntropy, lambda x, w, t, label_smoothing, chunk_rows:
     F.lm_head_cross_entropy(x, w, t, label_smoothing=label_smoothing, chunk_rows=chunk_rows),
     lambda x, w, t, label_smoothing, chunk_rows: _np_ce(x @ w.T, t, label_smoothing),
     _draw_lm_head_ce)


def _np_attention(q, k, v, causal=True, mask=None):
    d = q.shape[-1]
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(d)
    T, S = s.shape[-2:]
    keep = np.ones((T, S), dtype=bool)
    if causal:
        keep = ~np.triu(keep, k=S - T + 1)
    keep = keep if mask is None else keep & mask
    return _np_softmax(s, -1, np.broadcast_to(keep, s.shape)) @ v


def _draw_attention(data):
    batch = data.draw(ags.shapes(min_dims=0, max_dims=2, max_side=2))
    T, d = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    S = T + data.draw(st.integers(0, 2))  # extra keys: a KV cache of earlier steps
    q = data.draw(ags.arrays((*batch, T, d)))
    k, v = (data.draw(ags.arrays((*batch, S, d))) for _ in range(2))
    mask = None
    if data.draw(st.booleans()):  # a padding mask over keys, maybe hiding whole rows
        mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=S, max_size=S)))
    return (q, k, v), {"causal": data.draw(st.booleans()), "mask": mask}


spec(A.ScaledDotProductAttention, lambda q, k, v, causal, mask: F.scaled_dot_product_attention(
    q, k, v, causal=causal, mask=mask), _np_attention, _draw_attention)


from autograd.ops import causal_attention as CA  # noqa: E402


def _np_qkv_attention(qkv, n_head):
    B, T, C3 = qkv.shape
    d = C3 // 3 // n_head
    q, k, v = np.moveaxis(qkv.reshape(B, T, 3, n_head, d), (2, 3), (0, 2))  # each (B, H, T, d)
    return np.swapaxes(_np_attention(q, k, v), 1, 2).reshape(B, T, n_head * d)


def _draw_qkv_attention(data):
    B, T = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 5))
    H, d = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    return (data.draw(ags.arrays((B, T, 3 * H * d))),), {"n_head": H}


spec(CA.QKVAttention, lambda qkv, n_head: F.qkv_attention(qkv, n_head), _np_qkv_attention,
     _draw_qkv_attention)


# ---- the LoRA layer's op (autograd/nn/lora.py) -----------------------------------------------
from autograd.nn.lora import LoRALinearFn  # noqa: E402


def _draw_lora(data):
    lead = data.draw(ags.shapes(min_dims=1, max_dims=2))
    n_in, n_out, r = (data.draw(st.integers(1, 4)) for _ in range(3))
    x, h = (data.draw(ags.arrays((*lead, n_in))) for _ in range(2))
    arrays = (x, h, *(data.draw(ags.arrays(s)) for s in ((n_in, n_out), (n_in, r), (r, n_out))))
    if data.draw(st.booleans()):
        arrays += (data.draw(ags.arrays((n_out,))),)
    return arrays, {"scale": data.draw(st.sampled_from([0.5, 2.0]))}


spec(LoRALinearFn, lambda x, h, w, a, bm, b=None, scale=1.0: LoRALinearFn.apply(
    x, h, w, a, bm, *(() if b is None else (b,)), scale=scale),
    lambda x, h, w, a, bm, b=None, scale=1.0: x @ w + scale * (h @ a) @ bm + (0 if b is None
                                                                              else b),
    _draw_lora)
