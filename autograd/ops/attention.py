"""Scaled dot-product attention as one fused op with its own backward."""

from __future__ import annotations

import math

from autograd.backend import get_array_module
from autograd.function import Function
from autograd.ops.softmax import stable_softmax

_causal_cache: dict = {}


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
        scale = 1.0 / math.sqrt(q.shape[-1])  # a Python float: no float64 promotion
        scores = q @ xp.swapaxes(k, -1, -2)
        scores *= scale
        bias = causal_bias(T, S, xp, scores.dtype) if causal else None
        probs, _ = stable_softmax(scores, axis=-1, keep=mask, bias=bias)
        dropped = probs
        if keep is not None:
            dropped = probs * keep * scores.dtype.type(1.0 / (1.0 - dropout_p))
        ctx.save_for_backward(q, k, v, probs, dropped, keep)
        ctx.scale = scale
        return dropped @ v

    @staticmethod
    def backward(ctx, g):
        q, k, v, probs, dropped, keep = ctx.saved
        xp = get_array_module(g)
        gv = xp.swapaxes(dropped, -1, -2) @ g
        gp = g @ xp.swapaxes(v, -1, -2)
        if keep is not None:
            gp *= keep
            gp *= gp.dtype.type(1.0 / (1.0 - ctx.params["dropout_p"]))
        gp *= probs  # from here on: dS = A * dA - A * sum(A * dA)
        gp -= probs * gp.sum(axis=-1, keepdims=True)
        gp *= ctx.scale
        gq = gp @ k
        gk = xp.swapaxes(gp, -1, -2) @ q
        return gq, gk, gv
