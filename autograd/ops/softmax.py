"""Softmax, log-softmax and cross-entropy, each fused and numerically stable.

Masks are boolean, True = keep. A masked position gets probability exactly 0 and gradient
exactly 0; a row with every position masked gives zeros, never NaN.
"""

from __future__ import annotations

from autograd.backend import get_array_module, is_cupy_array
from autograd.function import Function
from autograd.ops.nn import check_ids


def stable_softmax(x, axis=-1, keep=None, bias=None, inplace=False):
    """softmax(x) along `axis`, subtracting the max first so exp never overflows.

    `keep` (boolean, broadcastable) removes positions; `bias` (0 or -inf, broadcastable) is an
    additive mask, cheaper when it is fixed (the causal triangle). Returns (y, lse) where lse is
    the log of the normaliser (log-sum-exp), -inf for a fully masked row. `inplace=True`
    overwrites x with y (attention's score blocks): no full-size temporary is made.
    """
    xp = get_array_module(x)
    if keep is not None:
        if inplace:
            x[...] = xp.where(keep, x, -xp.inf)
        else:
            x = xp.where(keep, x, -xp.inf)
    if bias is not None:
        if inplace:
            x += bias
        else:
            x = x + bias
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # fully masked rows: exp(-inf - 0) = 0, no nan
    if inplace:
        e = x
        e -= m
    else:
        e = x - m
    xp.exp(e, out=e)
    total = e.sum(axis=axis, keepdims=True)
    with_mass = total > 0
    inv = xp.where(with_mass, 1 / xp.where(with_mass, total, 1), 0)
    e *= inv
    lse = xp.where(with_mass, m + xp.log(xp.where(with_mass, total, 1)), -xp.inf)
    return e, lse


class Softmax(Function):
    """y = exp(x) / sum(exp(x)) along `axis`, restricted to kept positions.
    VJP: dx = y * (g - sum(g * y)), the sum along `axis` (zero where y is zero, so masked
    positions get exactly zero gradient)."""

    rule = "softmax: dx = y (g - sum(g y))"

    @staticmethod
    def forward(ctx, x, *, axis=-1, mask=None):
        y, _ = stable_softmax(x, axis, keep=mask)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        gy = g * y
        return gy - y * gy.sum(axis=ctx.params.get("axis", -1), keepdims=True)


class LogSoftmax(Function):
    """out = x - logsumexp(x) along `axis` over kept positions; masked positions are set to 0
    (not -inf), so sums over a row stay finite.
    VJP: dx = g - softmax(x) * sum(g) over kept positions (0 at masked positions)."""

    rule = "log_softmax: dx = g - softmax(x) sum(g)"

    @staticmethod
    def forward(ctx, x, *, axis=-1, mask=None):
        xp = get_array_module(x)
        y, lse = stable_softmax(x, axis, keep=mask)
        out = x - lse
        if mask is not None:
            out = xp.where(mask, out, 0)
        ctx.save_for_backward(y, mask)
        return out

    @staticmethod
    def backward(ctx, g):
        y, mask = ctx.saved
        xp = get_array_module(g)
        if mask is not None:
            g = xp.where(mask, g, 0)
        return g - y * g.sum(axis=ctx.params.get("axis", -1), keepdims=True)


class CrossEntropy(Function):
    """Mean cross-entropy from logits (..., V) and integer targets (...), over the targets that
    are not `ignore_index`. With smoothing s, the target distribution is (1 - s) one-hot + s / V:
        loss_i = -(1 - s) log p_i[t_i] - (s / V) sum_j log p_i[j],  p_i = softmax(logits_i).
    VJP: dlogits_i = g * (p_i - (1 - s) onehot(t_i) - s / V) / n_kept for kept rows, 0 for
    ignored rows. With no kept target the loss is 0 and so is the gradient (n counts as 1)."""

    rule = "cross_entropy: dlogits = (softmax - target distribution) / n"

    @staticmethod
    def forward(ctx, logits, targets, *, ignore_index=-100, label_smoothing=0.0):
        xp = get_array_module(logits)
        V = logits.shape[-1]
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"cross_entropy: targets of shape {tuple(targets.shape)} don't match logits of "
                f"shape {tuple(logits.shape)} (expected {tuple(logits.shape[:-1])})"
            )
        x = logits.reshape(-1, V)
        t = targets.reshape(-1)
        kept = t != ignore_index
        safe_t = xp.where(kept, t, 0)
        if not is_cupy_array(t):  # on a GPU the check would wait for the device (F checks first)
            check_ids(t[kept], V, f"cross_entropy: targets (other than {ignore_index})")
        p, lse = stable_softmax(x, axis=-1)
        rows = xp.arange(x.shape[0])
        logp_target = x[rows, safe_t] - lse[:, 0]
        per_row = -(1.0 - label_smoothing) * logp_target
        if label_smoothing:
            per_row -= label_smoothing * (x.mean(axis=-1) - lse[:, 0])
        # The count stays an array: reading it into Python would wait for a GPU.
        n = xp.maximum(kept.sum(), 1).astype(logits.dtype)
        ctx.save_for_backward(p, safe_t, kept, n)
        ctx.logits_shape = logits.shape
        return ((per_row * kept).sum() / n).astype(logits.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        p, t, kept, n = ctx.saved
        xp = get_array_module(p)
        s = ctx.params.get("label_smoothing", 0.0)
        grad = p.copy() if s == 0 else p - s / p.shape[-1]
        grad[xp.arange(p.shape[0]), t] -= 1.0 - s
        grad *= (kept[:, None] * (g / n)).astype(p.dtype)
        return grad.reshape(ctx.logits_shape), None
