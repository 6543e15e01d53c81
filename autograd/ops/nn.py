"""Neural-network ops with hand-derived backward passes: linear, embedding, layer and RMS norm,
dropout, rotary position embedding and the SwiGLU gate.

Each is one fused op (one node in the graph) for speed and numerical care; each is checked
against the same computation composed from primitive ops (tests/autograd/test_fused.py).
"""

from __future__ import annotations

from autograd import backend, blas
from autograd.backend import flat_blocks, get_array_module, is_cupy_array, outer_into, scatter_add
from autograd.function import Function
from autograd.ops.activations import sigmoid
from autograd.parallel import run_blocks


def check_ids(ids, num, what):
    """Integer ids must lie in [0, num): a clear error instead of a wrong row or a crash."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= num):
        raise IndexError(f"{what} must be in [0, {num}); got values from {int(ids.min())} to "
                         f"{int(ids.max())}")


def _rows(a):
    """View (..., n) as (rows, n): one 2-D matrix product instead of a batched one."""
    return a.reshape(-1, a.shape[-1])


class Linear(Function):
    """out = x @ w + b, x of shape (..., in), w (in, out), b (out,) or absent.
    VJP: dx = g @ w^T, dw = x^T @ g (summed over all leading axes), db = sum of g over rows."""

    rule = "linear: dx = g w^T, dw = x^T g, db = sum(g)"

    @staticmethod
    def forward(ctx, x, w, b=None):
        if x.shape[-1] != w.shape[0]:
            raise ValueError(
                f"linear: input has {x.shape[-1]} features but the weight of shape "
                f"{tuple(w.shape)} expects {w.shape[0]} (weights are stored (in, out))"
            )
        out = blas.matmul(_rows(x), w, bias=b)
        ctx.save_for_backward(x, w)
        return out.reshape(*x.shape[:-1], w.shape[1])

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        need = ctx.needs_input_grad
        g2 = _rows(g)
        gx = blas.matmul(g2, w.T).reshape(x.shape) if need[0] else None
        gw = blas.matmul(_rows(x).T, g2) if need[1] else None
        gb = column_sums(g2) if len(need) > 2 and need[2] else None
        return (gx, gw, gb) if len(need) > 2 else (gx, gw)


def column_sums(a):
    """The sum over the rows of a 2-D array, as a vector-matrix product with a row of ones: the
    BLAS does it 2-4x faster than NumPy's sum over axis 0 (which adds row after row)."""
    xp = get_array_module(a)
    return xp.ones(a.shape[0], dtype=a.dtype) @ a


class Embedding(Function):
    """out = table[ids], ids integer of any shape, table (num, dim).
    VJP: dtable = zeros, then g's rows added at `ids`: repeated ids accumulate (scatter-add,
    never `dtable[ids] += g`, which would keep only one of the repeats)."""

    rule = "embedding: dtable[id] += g for every occurrence of id"

    @staticmethod
    def forward(ctx, ids, table):
        if ids.dtype.kind not in "iu":
            raise TypeError(f"embedding: ids must be integers, got {ids.dtype}")
        if not is_cupy_array(ids):  # on a GPU the check would wait for the device (F checks first)
            check_ids(ids, table.shape[0], "embedding: ids")
        # A copy (ids are small): the caller may reuse their id buffer before the backward.
        ctx.save_for_backward(ids.copy())
        ctx.table_shape = table.shape
        return table[ids]

    @staticmethod
    def backward(ctx, g):
        (ids,) = ctx.saved
        xp = get_array_module(g)
        dtable = xp.zeros(ctx.table_shape, dtype=g.dtype)
        ids, rows = ids.reshape(-1), g.reshape(-1, ctx.table_shape[1])
        if is_cupy_array(g) or ids.size == 0:
            scatter_add(dtable, ids, rows)
            return None, dtable
        # Sort the ids, so each id's rows lie together, and add each run of rows with one
        # reduceat: several times faster than np.add.at, and repeats still accumulate.
        order = xp.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = xp.flatnonzero(xp.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        dtable[sorted_ids[starts]] = xp.add.reduceat(rows[order], starts, axis=0)
        return None, dtable


class LayerNorm(Function):
    """out = xhat * gamma + beta,  xhat = (x - mean) / sqrt(var + eps) over the last axis.
    VJP, with gh = g * gamma and means over the last axis:
        dx = (gh - mean(gh) - xhat * mean(gh * xhat)) / sqrt(var + eps),
        dgamma = sum over rows of g * xhat,  dbeta = sum over rows of g.
    (The two mean terms come from mean and var depending on every x in the row.)"""

    rule = "layer_norm: dx = rstd (gh - mean(gh) - xhat mean(gh xhat)), gh = g gamma"

    # Rows are normalised independently, so both passes go block by block of rows, each
    # block's few passes in cache (and the blocks may run on several threads). What is saved is
    # x itself (the graph holds it anyway) with each row's mean and 1/std: no xhat is written
    # to memory; the backward remakes each block's x - mean in cache. Products of a per-row
    # and a per-column factor (rstd gamma^T) are written by `outer_into`, not broadcast.
    @staticmethod
    def forward(ctx, x, gamma, beta=None, *, eps=1e-5):
        xp = get_array_module(x)
        x2 = _rows(x)
        mean = xp.empty(x2.shape[0], dtype=x.dtype)
        rstd = xp.empty_like(mean)
        out = xp.empty_like(x2)
        mean_of_row = _row_mean_vector(x2, xp)

        def block(blk):
            xb, m, r, o = x2[blk], mean[blk], rstd[blk], out[blk]
            m[:] = (xb @ mean_of_row)[:, 0]
            centred = xp.subtract(xb, m[:, None])
            r[:] = _row_dots(centred, xp)  # sum of (x - mean)^2 per row, no squared array
            r *= mean_of_row[0, 0]
            r += eps
            xp.sqrt(r, out=r)
            xp.divide(1.0, r, out=r)
            outer_into(r, gamma, o)
            o *= centred  # (x - mean) rstd gamma
            if beta is not None:
                o += beta

        run_blocks(block, _row_blocks(x2, xp))
        ctx.save_for_backward(x, mean, rstd, gamma)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        x, mean, rstd, gamma = ctx.saved
        xp = get_array_module(g)
        need = ctx.needs_input_grad
        g2, x2 = _rows(g), _rows(x)
        blocks = _row_blocks(g2, xp)
        gx = xp.empty_like(g2) if need[0] else None
        # Each block's column sums go to a row of their own (blocks may run on different
        # threads), added up at the end.
        want_gamma, want_beta = need[1], len(need) > 2 and need[2]
        partial = xp.zeros((2, len(blocks), g2.shape[1]), dtype=g.dtype)
        gamma_mean = (gamma / max(g2.shape[1], 1)).reshape(-1, 1)

        # With c = x - mean (so xhat = c rstd): mean(gh) = g @ gamma/n, mean(gh xhat) = rstd (g c)
        # @ gamma/n, and dx = g (rstd gamma^T) - rstd mean(gh) - c rstd^3 ((g c) @ gamma/n).
        def block(i):
            blk = blocks[i]
            gb, r = g2[blk], rstd[blk]
            centred = xp.subtract(x2[blk], mean[blk][:, None])
            g_c = gb * centred
            if want_gamma:
                partial[0, i] = r @ g_c  # sum over rows of g xhat
            if want_beta:
                partial[1, i] = column_sums(gb)
            if gx is not None:
                out = gx[blk]
                mean_gh = (gb @ gamma_mean)[:, 0]
                xhat_term = (g_c @ gamma_mean)[:, 0]
                outer_into(r, gamma, out)
                out *= gb
                xhat_term *= r * r * r
                out -= xp.multiply(centred, xhat_term[:, None], out=centred)
                out -= (mean_gh * r)[:, None]

        run_blocks(block, list(range(len(blocks))))
        ggamma = partial[0].sum(axis=0) if want_gamma else None
        gbeta = partial[1].sum(axis=0) if want_beta else None
        gx = None if gx is None else gx.reshape(g.shape)
        return (gx, ggamma) if len(need) == 2 else (gx, ggamma, gbeta)


def _row_mean_vector(x2, xp):
    """A (n, 1) column of 1/n: `rows @ it` is the mean of each row, as one matrix-vector
    product (NumPy's own mean over a short last axis is several times slower)."""
    n = x2.shape[1]
    return xp.full((n, 1), 1.0 / max(n, 1), dtype=x2.dtype)


def _row_dots(a, xp):
    """The dot product of each row of a 2-D array with itself, without making a * a."""
    vecdot = getattr(xp, "vecdot", None)  # NumPy 2
    return vecdot(a, a) if vecdot is not None else xp.einsum("ij,ij->i", a, a)


def _row_blocks(x2, xp):
    """Blocks of rows of a (rows, n) array, about backend.BLOCK_ELEMENTS elements each."""
    return flat_blocks(x2.shape[0], xp,
                       block=max(1, backend.BLOCK_ELEMENTS // max(x2.shape[1], 1)))


class RMSNorm(Function):
    """out = xhat * gamma,  xhat = x / sqrt(mean(x^2) + eps) over the last axis.
    VJP, with gh = g * gamma:  dx = (gh - xhat * mean(gh * xhat)) / sqrt(mean(x^2) + eps),
    dgamma = sum over rows of g * xhat."""

    rule = "rms_norm: dx = rstd (gh - xhat mean(gh xhat)), gh = g gamma"

    @staticmethod
    def forward(ctx, x, gamma, *, eps=1e-6):
        xp = get_array_module(x)
        rstd = 1.0 / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
        xhat = x * rstd
        ctx.save_for_backward(xhat, rstd, gamma)
        return xhat * gamma

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, gamma = ctx.saved
        need = ctx.needs_input_grad
        gx = None
        if need[0]:
            gh = g * gamma
            gx = gh - xhat * (gh * xhat).mean(axis=-1, keepdims=True)
            gx *= rstd
        return gx, (_rows(g * xhat).sum(axis=0) if need[1] else None)


class Dropout(Function):
    """out = x * keep / (1 - p), with `keep` a fixed boolean mask drawn by the caller (so the
    op itself is deterministic and can be gradchecked).  VJP: dx = g * keep / (1 - p)."""

    rule = "dropout: dx = g keep / (1 - p)"

    @staticmethod
    def forward(ctx, x, *, keep, p):
        scale = x.dtype.type(1.0 / (1.0 - p))
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return _masked_scale(x, keep, scale)

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved
        return _masked_scale(g, keep, ctx.scale)


def _masked_scale(x, keep, scale):
    """x * keep * scale, block by block: the second pass reads the cache, not main memory."""
    xp = get_array_module(x)
    if x.shape != keep.shape:  # a broadcast mask: the plain way
        return x * keep * scale
    out = xp.empty(x.shape, dtype=x.dtype)  # C order, so out.reshape(-1) is a view
    xf, kf, of = x.reshape(-1), keep.reshape(-1), out.reshape(-1)

    def block(blk):
        o = of[blk]
        xp.multiply(xf[blk], kf[blk], out=o)
        o *= scale

    run_blocks(block, flat_blocks(xf.size, xp))
    return out


def rope_tables(positions, head_dim, base, xp, dtype):
    """cos and sin of the rotation angles pos * base^(-2i/head_dim), shape (T, head_dim/2)."""
    inv_freq = 1.0 / (base ** (xp.arange(0, head_dim, 2, dtype=xp.float64) / head_dim))
    angles = xp.asarray(positions, dtype=xp.float64)[:, None] * inv_freq[None, :]
    return xp.cos(angles).astype(dtype), xp.sin(angles).astype(dtype)


class RotaryEmbedding(Function):
    """Rotary position embedding (RoPE, "rotate half" pairing): x of shape (..., T, d), split into
    halves x1, x2 of d/2 features; with angles a = pos * base^(-2i/d),
        out = [x1 cos a - x2 sin a,  x1 sin a + x2 cos a].
    Each pair is rotated by a fixed angle, so the VJP rotates g back by -a:
        dx1 = g1 cos a + g2 sin a,  dx2 = -g1 sin a + g2 cos a."""

    rule = "rotary_embedding: the gradient is rotated back by -angle"

    @staticmethod
    def forward(ctx, x, *, positions, base=10000.0):
        xp = get_array_module(x)
        d = x.shape[-1]
        if d % 2:
            raise ValueError(f"rotary_embedding: the last axis must be even, got {d}")
        if len(positions) != x.shape[-2]:
            raise ValueError(
                f"rotary_embedding: {len(positions)} positions for {x.shape[-2]} time steps"
            )
        cos, sin = rope_tables(positions, d, base, xp, x.dtype)
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, xp)

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved
        return _rotate(g, cos, -sin, get_array_module(g))


def _rotate(x, cos, sin, xp):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return xp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


class SwiGLU(Function):
    """out = silu(x @ w_gate) * (x @ w_up), with silu(a) = a * sigmoid(a).
    VJP, with a = x @ w_gate, b = x @ w_up, s = sigmoid(a):
        da = g * b * s * (1 + a (1 - s)),  db = g * a * s,
        dx = da @ w_gate^T + db @ w_up^T,  dw_gate = x^T @ da,  dw_up = x^T @ db."""

    rule = "swiglu: da = g b s (1 + a (1 - s)), db = g silu(a)"

    @staticmethod
    def forward(ctx, x, w_gate, w_up):
        xp = get_array_module(x)
        x2 = _rows(x)
        a = blas.matmul(x2, w_gate)
        b = blas.matmul(x2, w_up)
        s = sigmoid(a, xp)
        ctx.save_for_backward(x, w_gate, w_up, a, b, s)
        return (a * s * b).reshape(*x.shape[:-1], w_up.shape[1])

    @staticmethod
    def backward(ctx, g):
        x, w_gate, w_up, a, b, s = ctx.saved
        g2 = _rows(g)
        silu = a * s
        da = g2 * b * s * (1 + a * (1 - s))
        db = g2 * silu
        x2 = _rows(x)
        gx = blas.matmul(db, w_up.T, out=blas.matmul(da, w_gate.T), accumulate=True)
        return gx.reshape(x.shape), blas.matmul(x2.T, da), blas.matmul(x2.T, db)
