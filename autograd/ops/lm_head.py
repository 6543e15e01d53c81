"""The language model's output layer and its loss as one op, without the (N, V) logits.

A GPT's last step is logits = x W^T over the whole vocabulary, then cross-entropy. Composed
from `linear` and `cross_entropy`, the logits (N rows of V floats), their softmax and their
gradient are each held at once: at N = 2048 rows and V = 4096 that is 32 MB per copy in float32,
and at a GPT-2 vocabulary (V = 50257) 400 MB. Here the rows are taken a chunk at a time: the
chunk's logits, its softmax, its loss and its gradient of the logits are made and used at once
(the two matrix products of the backward), then dropped. What is kept for the backward is the
gradient of x (N, C) and of W (V, C), both the size of inputs: the loss is a scalar, so its
upstream gradient only scales them.
"""

from __future__ import annotations

from autograd import backend, blas
from autograd.backend import flat_blocks, get_array_module, is_cupy_array
from autograd.function import Function
from autograd.grad_mode import is_grad_enabled
from autograd.ops.nn import check_ids
from autograd.ops.softmax import stable_softmax
from autograd.parallel import run_blocks

# Logit elements per chunk (4 MB in float32), far below the full logits. Fewer rows per chunk
# make the products d^T x thin and slow: at V = 4096, C = 384 on one core, chunks of 256 rows
# cost 217 ms of CPU for forward + backward, 32 rows 438 ms, the composed ops 282 ms (measured
# with process_time, alternating; benchmarks/bench_lm_head.py measures the whole model).
CHUNK_ELEMENTS = 1 << 20


def chunk_rows_for(vocab_size):
    """Rows per chunk for a vocabulary: CHUNK_ELEMENTS logits, but at least 128 rows."""
    return max(128, CHUNK_ELEMENTS // max(vocab_size, 1))


class LMHeadCrossEntropy(Function):
    """Mean cross-entropy of integer targets t (...) under logits z = x W^T, with x (..., C) and
    the output weight W (V, C) (the token embedding's layout), over the targets that are not
    `ignore_index`; the same value as cross_entropy(linear(x, W^T), t). Row by row, with
    p_i = softmax(z_i), smoothing s and n the number of kept targets:
        loss = sum_i kept_i (-(1 - s) log p_i[t_i] - (s / V) sum_j log p_i[j]) / n
    VJP: with d_i = kept_i (p_i - (1 - s) onehot(t_i) - s / V) / n, the gradient of the loss
    with respect to z_i, and g the (scalar) upstream gradient:
        dx = g (d W),   dW = g (d^T x).
    d is made one chunk of rows at a time, in the forward, and dropped after its two products."""

    rule = "lm_head_cross_entropy: d = (softmax(x W^T) - target) / n, dx = g d W, dW = g d^T x"

    @staticmethod
    def forward(ctx, x, weight, targets, *, ignore_index=-100, label_smoothing=0.0,
                chunk_rows=None):
        xp = get_array_module(x)
        V, C = weight.shape
        if x.shape[-1] != C:
            raise ValueError(f"lm_head_cross_entropy: hidden states have {x.shape[-1]} features "
                             f"but the weight of shape {tuple(weight.shape)} expects {C} "
                             "(the weight is stored (vocab, features))")
        if targets.shape != x.shape[:-1]:
            raise ValueError(f"lm_head_cross_entropy: targets of shape {tuple(targets.shape)} "
                             f"don't match hidden states of shape {tuple(x.shape)} "
                             f"(expected {tuple(x.shape[:-1])})")
        s = label_smoothing
        rows_x = x.reshape(-1, C)
        t = targets.reshape(-1)
        kept = t != ignore_index
        if not is_cupy_array(t):  # on a GPU the check would wait for the device (F checks first)
            check_ids(t[kept], V, f"lm_head_cross_entropy: targets (other than {ignore_index})")
        safe_t = xp.where(kept, t, 0)
        n = xp.maximum(kept.sum(), 1).astype(x.dtype)  # an array: no wait on a GPU
        need_x, need_w = ctx.needs_input_grad[:2]
        grads = is_grad_enabled() and (need_x or need_w)
        dx = xp.empty(rows_x.shape, dtype=x.dtype) if grads and need_x else None
        dw = xp.zeros_like(weight) if grads and need_w else None
        total = xp.zeros((), dtype=x.dtype)
        step = chunk_rows or chunk_rows_for(V)
        for lo in range(0, rows_x.shape[0], step):
            xr, tr, kr = rows_x[lo:lo + step], safe_t[lo:lo + step], kept[lo:lo + step]
            logits = blas.matmul(xr, weight.T)
            per_row = xp.empty(xr.shape[0], dtype=x.dtype)
            scale = (kr / n).astype(x.dtype)

            # The chunk's softmax, loss and gradient of the logits, in blocks of rows that fit
            # the CPU cache (the blocks are independent: they may run on two threads).
            def rows(blk, logits=logits, tr=tr, per_row=per_row, scale=scale):
                z, tb = logits[blk], tr[blk]
                picked = xp.arange(z.shape[0])
                row_loss = per_row[blk]
                row_loss[:] = -(1.0 - s) * z[picked, tb]  # read before the softmax overwrites it
                if s:
                    row_loss -= s * z.mean(axis=-1)
                # In place: the logits become the probabilities, then the gradient.
                p, lse = stable_softmax(z, axis=-1, inplace=True)
                row_loss += lse[:, 0]  # -(1 - s)(z_t - lse) - s (mean z - lse)
                if grads:
                    if s:
                        p -= s / V
                    p[picked, tb] -= 1.0 - s
                    p *= scale[blk, None]

            run_blocks(rows, flat_blocks(xr.shape[0], xp, block=max(1, backend.BLOCK_ELEMENTS // V)))
            total += (per_row * kr).sum()
            if not grads:
                continue
            if dx is not None:
                blas.matmul(logits, weight, out=dx[lo:lo + step])
            if dw is not None:
                blas.matmul(logits.T, xr, out=dw, accumulate=True)
        ctx.save_for_backward(dx, dw)
        ctx.x_shape = x.shape
        return (total / n).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        dx, dw = ctx.saved
        gx = None if dx is None else (dx * g).reshape(ctx.x_shape)
        gw = None if dw is None else dw * g
        return gx, gw, None
