"""Matrix products."""

from __future__ import annotations

from autograd.backend import get_array_module
from autograd.function import Function, unbroadcast


class MatMul(Function):
    """out = a @ b with NumPy's rules: batch axes broadcast; a 1-D `a` is a row vector and a 1-D
    `b` a column vector, their extra axis dropped from the result.
    VJP (2-D): da = g @ b^T, db = a^T @ g; batched the same on the last two axes, then summed over
    broadcast batch axes."""

    rule = "matmul: d(a@b)/da = g @ b^T, d(a@b)/db = a^T @ g"

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands need at least one axis (use * for scalars)")
        k_a = a.shape[-1]
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if k_a != k_b:
            raise ValueError(
                f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} don't line up: a's last "
                f"axis ({k_a}) must equal b's {'only' if b.ndim == 1 else 'second-to-last'} "
                f"axis ({k_b})"
            )
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        xp = get_array_module(g)
        need_a, need_b = ctx.needs_input_grad
        # Give 1-D operands (and the matching axis of g) their implicit axis back.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        ga = gb = None
        if need_a:
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            if a.ndim == 1:
                ga = unbroadcast(ga, a2.shape, "matmul", 0).reshape(a.shape)
        if need_b:
            if b2.ndim == 2 and a2.ndim > 2:
                # A shared weight: fold the batch axes into one product, no batched sum needed.
                k, m = a2.shape[-1], g2.shape[-1]
                gb = a2.reshape(-1, k).T @ g2.reshape(-1, m)
            else:
                gb = xp.swapaxes(a2, -1, -2) @ g2
            if b.ndim == 1:
                gb = unbroadcast(gb, b2.shape, "matmul", 1).reshape(b.shape)
        return ga, gb
