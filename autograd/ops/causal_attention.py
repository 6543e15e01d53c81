"""Causal attention that skips the masked half, and the fused q/k/v-split attention of a GPT.

A causal score matrix is a triangle: query i sees keys j <= i (+ S - T with cached keys). The
rows are cut into query tiles [i0, i1); a tile's queries see only keys [0, i1 + S - T), so the
products, the softmax and the backward never touch the tile's part right of that (with tiles of
a quarter of T, 5/8 of the full square is computed). Only the square where the tile meets the
diagonal needs the -inf mask.

Each tile's scores are kept transposed, keys by queries (S_tile^T = K Q_tile^T), so the softmax
sums and maxima run over the second-to-last axis: NumPy reduces that axis with whole-row vector
operations, about three times faster than the short last axis it would reduce otherwise. The
saved probabilities are the list of these tiles (half a square, not a full one).

Work goes in blocks of the leading (batch) axis, each block's tile about _BLOCK_BYTES, so the
softmax's passes stay in the CPU cache (one block on a GPU); the blocks are independent, and
autograd.parallel may run them on several threads.

The kernels work on 4-D arrays (batch, heads, time, head_dim) of any strides: the fused op hands
them views straight into the (B, T, 3C) output of the q/k/v projection and into its gradient, so
the split into heads and the merge back cost no copy and no op of their own.
"""

from __future__ import annotations

import math

from autograd.backend import get_array_module, is_cupy_array
from autograd.function import Function
from autograd.parallel import run_blocks

# Bytes of one tile's scores per block: ~1 MB fits the L2 cache. Tests shrink both constants.
_BLOCK_BYTES = 1 << 20
# Query rows per tile; None picks 2 x head_dim within 32..64: small tiles skip more of the
# masked half, but each product then gets thinner and each pass costs a NumPy call per tile.
# One thread, forward + backward of 4 x 256 x 384 with 6 heads (d = 64, config M's half batch)
# on a 2 GHz AMD EPYC: 128-row tiles 57 ms, 64 rows 45, 32 rows 45, 16 rows 54; at S's shape
# (d = 32) 32 and 64 rows were equal.
_QUERY_TILE = None
_bias_cache: dict = {}


def query_tiles(T, S, head_dim):
    """[(i0, i1, keys)]: query rows i0..i1 see keys 0..keys (exclusive)."""
    tile = _QUERY_TILE or min(max(2 * head_dim, 32), 64)
    return [(i0, min(i0 + tile, T), min(i0 + tile, T) + S - T) for i0 in range(0, T, tile)]


def _diagonal_bias(n, xp, dtype):
    """(n, n) additive mask for the square where a tile meets the diagonal, keys by queries:
    -inf where key r comes after query c (r > c), 0 elsewhere."""
    key = (n, xp.__name__, str(dtype))
    bias = _bias_cache.get(key)
    if bias is None:
        r = xp.arange(n)
        bias = xp.where(r[:, None] > r[None, :], -xp.inf, 0).astype(dtype)
        if len(_bias_cache) > 64:
            _bias_cache.clear()
        _bias_cache[key] = bias
    return bias


def _batch_blocks(N, per_item_bytes, on_gpu):
    step = N if on_gpu else max(1, min(N, _BLOCK_BYTES // max(per_item_bytes, 1)))
    return [slice(b, min(b + step, N)) for b in range(0, N, step)]


def causal_forward(qs, k, v, out, keep=None, drop_scale=1.0):
    """Fill `out` (N, H, T, dv) with causal attention of queries `qs` (N, H, T, d), already
    multiplied by 1/sqrt(d), over keys `k` and values `v` (N, H, S, d|dv), S >= T. `keep`
    (N, H, T, S) boolean or None: dropout on the probabilities, survivors times `drop_scale`.
    Returns (tiles, probs): probs[i] holds tile i's probabilities, shape (N, H, keys, i1 - i0)."""
    xp = get_array_module(qs)
    N, H, T, d = qs.shape
    tiles = query_tiles(T, k.shape[-2], d)
    probs = [xp.empty((N, H, keys, i1 - i0), dtype=qs.dtype) for i0, i1, keys in tiles]
    widest = H * k.shape[-2] * (tiles[0][1] - tiles[0][0]) * qs.dtype.itemsize

    def block(bb):  # blocks write disjoint rows of out and probs: they may run on two threads
        for (i0, i1, keys), p in zip(tiles, probs):
            st = p[bb]  # scores, keys by queries, turned into probabilities in place
            xp.matmul(k[bb, :, :keys], xp.swapaxes(qs[bb, :, i0:i1], -1, -2), out=st)
            st[:, :, keys - (i1 - i0):] += _diagonal_bias(i1 - i0, xp, qs.dtype)
            st -= st.max(axis=-2, keepdims=True)  # every query sees its own key: finite
            xp.exp(st, out=st)
            st *= 1 / st.sum(axis=-2, keepdims=True)
            if keep is not None:  # dropped, on a copy: the backward needs the probabilities
                st = st * xp.swapaxes(keep[bb, :, i0:i1, :keys], -1, -2)
            o = out[bb, :, i0:i1]
            xp.matmul(xp.swapaxes(st, -1, -2), v[bb, :, :keys], out=o)
            if keep is not None and drop_scale != 1.0:
                o *= drop_scale  # on the (queries, dv) result: smaller than the scores

    run_blocks(block, _batch_blocks(N, widest, is_cupy_array(qs)), uses_blas=True)
    return tiles, probs


def causal_backward(g, qs, k, v, tiles, probs, gq, gk, gv, scale, keep=None, drop_scale=1.0):
    """Fill gq, gk, gv (shaped like qs, k, v) with the gradients of `causal_forward` for the
    upstream gradient g (N, H, T, dv); `scale` = 1/sqrt(d). Per tile, with A its probabilities
    and D the dropout scaling (keys by queries, as stored):
        dv += (A D) g,  dA = (v g^T) D,  dS = A (dA - sum over keys of dA A),
        dq = dS^T k scale,  dk += dS (q scale)."""
    xp = get_array_module(g)
    N, H, T, d = qs.shape
    widest = H * k.shape[-2] * (tiles[0][1] - tiles[0][0]) * qs.dtype.itemsize

    def block(bb):
        # The last tile sees every key: it writes dk and dv, the earlier tiles add to them.
        for first, ((i0, i1, keys), p) in enumerate(reversed(list(zip(tiles, probs)))):
            a, gt = p[bb], g[bb, :, i0:i1]
            ad = a  # the probabilities as dropped (before the scale)
            if keep is not None:
                ad = a * xp.swapaxes(keep[bb, :, i0:i1, :keys], -1, -2)
                gt = gt * drop_scale  # D = keep x scale: the scale goes on the small g tile
            ds = v[bb, :, :keys] @ xp.swapaxes(gt, -1, -2)  # dA / keep, then dS, in place
            ds *= ad  # dA * A = (v g^T scale) * keep * A (keep * keep = keep)
            ds -= a * ds.sum(axis=-2, keepdims=True)
            xp.matmul(xp.swapaxes(ds, -1, -2), k[bb, :, :keys], out=gq[bb, :, i0:i1])
            gq[bb, :, i0:i1] *= scale
            if first == 0:
                xp.matmul(ad, gt, out=gv[bb, :, :keys])
                xp.matmul(ds, qs[bb, :, i0:i1], out=gk[bb, :, :keys])
            else:
                gv[bb, :, :keys] += ad @ gt
                gk[bb, :, :keys] += ds @ qs[bb, :, i0:i1]

    run_blocks(block, _batch_blocks(N, widest, is_cupy_array(g)), uses_blas=True)


class QKVAttention(Function):
    """Causal self-attention straight from the q/k/v projection, heads split and merged inside:
        q, k, v = the three C-wide parts of qkv (B, T, 3C), each cut into n_head heads of d = C/H;
        out (B, T, C) = heads side by side of  P @ v,  P = dropout(softmax(q k^T / sqrt(d) + causal)).
    VJP: the attention VJP (see ScaledDotProductAttention) per head, written into the matching
    columns of d qkv. `keep` (B, H, T, T) boolean: the dropout mask, survivors scaled by
    1/(1 - dropout_p)."""

    rule = "qkv_attention: attention's VJP per head, placed in the q, k, v columns of dqkv"

    @staticmethod
    def forward(ctx, qkv, *, n_head, keep=None, dropout_p=0.0):
        B, T, C3 = qkv.shape
        if C3 % (3 * n_head):
            raise ValueError(f"qkv_attention: the last axis ({C3}) must be 3 x n_head ({n_head}) "
                             "x head size")
        xp = get_array_module(qkv)
        C = C3 // 3
        d = C // n_head
        heads = qkv.reshape(B, T, 3, n_head, d)  # a view: no copy
        ctx.scale = scale = 1.0 / math.sqrt(d)  # a Python float: no float64 promotion
        qs = xp.swapaxes(heads[:, :, 0], 1, 2) * scale  # (B, H, T, d), contiguous
        k, v = xp.swapaxes(heads[:, :, 1], 1, 2), xp.swapaxes(heads[:, :, 2], 1, 2)
        out = xp.empty((B, T, C), dtype=qkv.dtype)
        ctx.drop_scale = 1.0 / (1.0 - dropout_p)
        tiles, probs = causal_forward(qs, k, v, xp.swapaxes(out.reshape(B, T, n_head, d), 1, 2),
                                      keep, ctx.drop_scale)
        ctx.tiles = tiles
        ctx.save_for_backward(qs, k, v, keep, *probs)
        return out

    @staticmethod
    def backward(ctx, g):
        qs, k, v, keep, *probs = ctx.saved
        xp = get_array_module(g)
        B, H, T, d = qs.shape
        gqkv = xp.empty((B, T, 3 * H * d), dtype=g.dtype)
        heads = gqkv.reshape(B, T, 3, H, d)
        gq, gk, gv = (xp.swapaxes(heads[:, :, i], 1, 2) for i in range(3))
        causal_backward(xp.swapaxes(g.reshape(B, T, H, d), 1, 2), qs, k, v, ctx.tiles, probs,
                        gq, gk, gv, ctx.scale, keep, ctx.drop_scale)
        return gqkv
