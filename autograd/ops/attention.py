"""Scaled dot-product attention as one fused op with its own backward.

Causal attention without a mask goes through the tiled kernel of causal_attention.py, which
skips the masked half. Otherwise the work is done in blocks of a few (batch, head) pairs at a
time, each block's (T, S) score matrices small enough to stay in the CPU cache while the softmax
makes its passes over them; the big arrays are touched once per block instead of once per pass.
On a GPU the whole batch is one block.
"""

from __future__ import annotations

import math

from autograd.backend import get_array_module, is_cupy_array
from autograd.function import Function
from autograd.ops.causal_attention import causal_backward, causal_forward
from autograd.ops.softmax import stable_softmax

_causal_cache: dict = {}
# Scores per block: about 1 MB, a comfortable fit in L2. Read at each call: tests shrink it.
_BLOCK_BYTES = 1 << 20


def causal_bias(T, S, xp, dtype):
    """(T, S) additive mask: 0 where query i may see key j (j <= i + S - T), -inf elsewhere.

    Query i is the (S - T + i)-th position when the keys include S - T cached earlier steps.
    One small (T, S) array is added by broadcasting: no (B, H, T, S) boolean mask is built.
    """
    key = (T, S, xp.__name__, str(dtype))
    bias = _causal_cache.get(key)
    if bias is None:
        future = xp.triu(xp.ones((T, S), dtype=bool), k=S - T + 1)
        bias = xp.where(future, -xp.inf, 0).astype(dtype)
        if len(_causal_cache) > 64:
            _causal_cache.clear()
        _causal_cache[key] = bias
    return bias


def _blocks(n, T, S, itemsize, on_gpu):
    """Slices of the n flattened (batch, head) pairs, each holding about _BLOCK_BYTES of scores."""
    step = n if on_gpu else max(1, min(n, _BLOCK_BYTES // max(T * S * itemsize, 1)))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


class ScaledDotProductAttention(Function):
    """out = P @ v,  P = dropout(softmax(q @ k^T / sqrt(d) + masks)),
    q of shape (B, H, T, d), k and v (B, H, S, d). The causal mask lets query i see keys
    j <= i + S - T; `mask` (boolean, True = keep, broadcastable to (B, H, T, S)) removes more;
    `keep` is a dropout mask on P (scaled by 1/(1 - dropout_p)), drawn by the caller.
    VJP, with A the softmax probabilities and D the dropout scaling (P = A * D):
        dv = P^T @ g,  dP = g @ v^T,  dA = dP * D,
        dS = A * (dA - sum(dA * A, last axis)),  dq = dS @ k / sqrt(d),  dk = dS^T @ q / sqrt(d)."""

    rule = "attention: dv = P^T g, dS = A (dA - sum(dA A)), dq = dS k/sqrt(d), dk = dS^T q/sqrt(d)"

    @staticmethod
    def forward(ctx, q, k, v, *, causal=True, mask=None, keep=None, dropout_p=0.0):
        xp = get_array_module(q)
        if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise ValueError(
                f"attention: q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} must be "
                "(..., T, d), (..., S, d) and (..., S, dv)"
            )
        T, S = q.shape[-2], k.shape[-2]
        if causal and S < T:
            raise ValueError(f"attention: causal needs as many keys ({S}) as queries ({T})")
        lead = q.shape[:-2]
        if k.shape[:-2] != lead or v.shape[:-2] != lead:
            # Broadcast batch axes: materialise them once so every block sees plain arrays.
            lead = xp.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
            q, k, v = (xp.broadcast_to(t, (*lead, *t.shape[-2:])) for t in (q, k, v))
        ctx.shapes = (q.shape, k.shape, v.shape)
        ctx.scale = scale = 1.0 / math.sqrt(q.shape[-1])  # a Python float: no float64 promotion
        ctx.drop_scale = 1.0 / (1.0 - dropout_p) if keep is not None else None
        qf, kf, vf = (t.reshape(-1, *t.shape[-2:]) for t in (q, k, v))
        n = qf.shape[0]
        keep_f = None if keep is None else xp.broadcast_to(keep, (*lead, T, S)).reshape(n, T, S)
        if causal and mask is None:  # the tiled kernel, over (n, 1, T, d): one "head" per pair
            qs, k4, v4 = qf[:, None] * scale, kf[:, None], vf[:, None]
            keep4 = None if keep_f is None else keep_f[:, None]
            out = xp.empty((n, 1, T, vf.shape[-1]), dtype=q.dtype)
            ctx.tiles, probs = causal_forward(qs, k4, v4, out, keep4, ctx.drop_scale or 1.0)
            ctx.save_for_backward(qs, k4, v4, keep4, *probs)
            return out.reshape(*lead, T, vf.shape[-1])
        ctx.tiles = None
        bias = causal_bias(T, S, xp, q.dtype) if causal else None
        full_mask = None if mask is None else xp.broadcast_to(mask, (*lead, T, S)).reshape(n, T, S)
        probs = xp.empty((n, T, S), dtype=q.dtype)
        out = xp.empty((n, T, vf.shape[-1]), dtype=q.dtype)
        for blk in _blocks(n, T, S, q.dtype.itemsize, is_cupy_array(q)):
            p = probs[blk]  # the scores are computed, and turned into probabilities, in place
            # Scaling q (T x d) instead of the scores (T x S) saves a pass over the big array.
            xp.matmul(qf[blk] * scale, xp.swapaxes(kf[blk], -1, -2), out=p)
            keep_blk = None if full_mask is None else full_mask[blk]
            stable_softmax(p, axis=-1, keep=keep_blk, bias=bias, inplace=True)
            if keep_f is not None:
                p = p * keep_f[blk]
                p *= ctx.drop_scale
            xp.matmul(p, vf[blk], out=out[blk])
        ctx.save_for_backward(qf, kf, vf, probs, keep_f)
        return out.reshape(*lead, T, vf.shape[-1])

    @staticmethod
    def backward(ctx, g):
        xp = get_array_module(g)
        q_shape, k_shape, v_shape = ctx.shapes
        if ctx.tiles is not None:
            qs, k4, v4, keep4, *probs = ctx.saved
            gq, gk, gv = xp.empty_like(qs), xp.empty_like(k4), xp.empty_like(v4)
            causal_backward(g.reshape(qs.shape[0], 1, *g.shape[-2:]), qs, k4, v4, ctx.tiles,
                            probs, gq, gk, gv, ctx.scale, keep4, ctx.drop_scale or 1.0)
            return gq.reshape(q_shape), gk.reshape(k_shape), gv.reshape(v_shape)
        qf, kf, vf, probs, keep_f = ctx.saved
        n, T, S = probs.shape
        gf = g.reshape(n, T, -1)
        gq, gk, gv = xp.empty_like(qf), xp.empty_like(kf), xp.empty_like(vf)
        for blk in _blocks(n, T, S, probs.dtype.itemsize, is_cupy_array(g)):
            a = probs[blk]
            p = a if keep_f is None else a * keep_f[blk] * probs.dtype.type(ctx.drop_scale)
            xp.matmul(xp.swapaxes(p, -1, -2), gf[blk], out=gv[blk])
            gs = gf[blk] @ xp.swapaxes(vf[blk], -1, -2)  # dP, then dA, then dS, in place
            if keep_f is not None:
                gs *= keep_f[blk]
                gs *= ctx.drop_scale
            gs *= a
            gs -= a * gs.sum(axis=-1, keepdims=True)
            # dS still lacks the 1/sqrt(d) factor: applied to the small (T x d) results instead.
            xp.matmul(gs, kf[blk], out=gq[blk])
            gq[blk] *= ctx.scale
            xp.matmul(xp.swapaxes(gs, -1, -2), qf[blk], out=gk[blk])
            gk[blk] *= ctx.scale
        return gq.reshape(q_shape), gk.reshape(k_shape), gv.reshape(v_shape)
