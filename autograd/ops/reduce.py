"""Reductions over axes. Each backward first puts the reduced axes back (as size 1) so that the
upstream gradient broadcasts against the input: `_expand(g, ctx)`."""

from __future__ import annotations

import operator

from autograd.backend import get_array_module
from autograd.function import Function


def normalize_axes(axis, ndim):
    """The reduced axes as a sorted tuple of non-negative ints (None means all). Any integer
    type is an axis (np.int64 too). A 0-d tensor accepts axis 0 or -1 and has nothing to
    reduce, as in PyTorch (NumPy refuses any axis there)."""
    if axis is None:
        return tuple(range(ndim))
    try:
        axes = (operator.index(axis),)
    except TypeError:
        axes = tuple(operator.index(ax) for ax in axis)
    for ax in axes:
        if not -max(ndim, 1) <= ax < max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted({ax % ndim for ax in axes})) if ndim else ()


def _start(ctx, a, axis):
    ctx.in_shape = a.shape
    ctx.axes = normalize_axes(axis, a.ndim)
    return ctx.axes


def _keepdims_shape(ctx):
    return tuple(1 if i in ctx.axes else n for i, n in enumerate(ctx.in_shape))


def _expand(g, ctx):
    """Reshape g to the keepdims shape, then broadcast it to the input's shape (a view)."""
    xp = get_array_module(g)
    return xp.broadcast_to(g.reshape(_keepdims_shape(ctx)), ctx.in_shape)


def _count(ctx):
    n = 1
    for ax in ctx.axes:
        n *= ctx.in_shape[ax]
    return n


class Sum(Function):
    """out = sum of a over `axis`.  VJP: da = g broadcast back over the summed axes."""

    rule = "sum: d(sum a)/da_i = 1"

    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False):
        axes = _start(ctx, a, axis)
        return a.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return _expand(g, ctx)


class Mean(Function):
    """out = sum(a) / N over `axis` (N elements per output).  VJP: da = g / N, broadcast back."""

    rule = "mean: d(mean a)/da_i = 1/N"

    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False):
        axes = _start(ctx, a, axis)
        return a.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        # Divided after broadcasting: a 0-d g divided by a Python int would be float64 on NumPy 1.
        return _expand(g, ctx) / _count(ctx)


class Var(Function):
    """out = sum((a - mean(a))^2) / (N - ddof) over `axis`.
    VJP: da = g * 2 (a - mean(a)) / (N - ddof)."""

    rule = "var: d(var a)/da_i = 2 (a_i - mean) / (N - ddof)"

    @staticmethod
    def forward(ctx, a, *, axis=None, ddof=0, keepdims=False):
        axes = _start(ctx, a, axis)
        if ddof >= _count(ctx):
            # NumPy warns and returns inf or nan; a loss built on that is better stopped here.
            raise ValueError(
                f"var: ddof={ddof} leaves no degrees of freedom for {_count(ctx)} values per "
                f"result (axis={axis}); ddof must be smaller than the number of values"
            )
        centered = a - a.mean(axis=axes, keepdims=True)
        ctx.save_for_backward(centered)
        return a.var(axis=axes, ddof=ddof, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        (centered,) = ctx.saved
        scale = 2 / (_count(ctx) - ctx.params.get("ddof", 0))
        return g.reshape(_keepdims_shape(ctx)) * centered * scale


class Max(Function):
    """out = max of a over `axis`.  VJP: g goes to the maximal elements, split evenly on ties."""

    rule = "max: d(max a)/da_i = [a_i == max] / (number of maxima)"

    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False):
        return _extreme(ctx, a, axis, keepdims, a.max)

    @staticmethod
    def backward(ctx, g):
        return _to_extremes(g, ctx)


class Min(Function):
    """out = min of a over `axis`.  VJP: g goes to the minimal elements, split evenly on ties."""

    rule = "min: d(min a)/da_i = [a_i == min] / (number of minima)"

    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False):
        return _extreme(ctx, a, axis, keepdims, a.min)

    @staticmethod
    def backward(ctx, g):
        return _to_extremes(g, ctx)


def _extreme(ctx, a, axis, keepdims, reduce):
    """max or min (`reduce`) over `axis`, keeping a and the keepdims result for backward."""
    axes = _start(ctx, a, axis)
    out = reduce(axis=axes, keepdims=True)
    ctx.save_for_backward(a, out)
    return out if keepdims else out.reshape(_reduced_shape(a.shape, axes))


def _reduced_shape(shape, axes):
    return [n for i, n in enumerate(shape) if i not in axes]


def _to_extremes(g, ctx):
    a, extreme = ctx.saved
    hit = (a == extreme).astype(g.dtype)
    hit /= hit.sum(axis=ctx.axes, keepdims=True)
    return g.reshape(_keepdims_shape(ctx)) * hit


class LogSumExp(Function):
    """out = log(sum(exp(a))) over `axis`, computed as m + log(sum(exp(a - m))), m = max(a),
    so it never overflows.  VJP: da = g * softmax(a) = g * exp(a - out)."""

    rule = "logsumexp: d(lse a)/da_i = softmax(a)_i"

    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False):
        xp = get_array_module(a)
        axes = _start(ctx, a, axis)
        m = a.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # an all -inf slice must not give nan
        out = xp.log(xp.exp(a - m).sum(axis=axes, keepdims=True)) + m
        ctx.save_for_backward(a, out)
        return out if keepdims else out.reshape(_reduced_shape(a.shape, axes))

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved
        xp = get_array_module(a)
        return g.reshape(_keepdims_shape(ctx)) * xp.exp(a - out)
