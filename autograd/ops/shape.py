"""Ops that move elements around without changing them: reshape, transpose, broadcast, indexing,
concatenate, stack, and moving between devices. Their VJPs move the gradient back."""

from __future__ import annotations

from autograd.backend import get_array_module, index_array, scatter_add, to_device
from autograd.function import Function


class Reshape(Function):
    """out = a reshaped to `shape`.  VJP: da = g reshaped to a's shape."""

    rule = "reshape: the gradient is reshaped back"

    @staticmethod
    def forward(ctx, a, *, shape):
        ctx.in_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.in_shape)


class Transpose(Function):
    """out = a with its axes permuted (`axes`; reversed when None).
    VJP: da = g permuted by the inverse permutation."""

    rule = "transpose: the gradient is transposed back"

    @staticmethod
    def forward(ctx, a, *, axes=None):
        axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(ax % a.ndim for ax in axes)
        if sorted(axes) != list(range(a.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of {a.ndim} axes")
        ctx.inverse = tuple(sorted(range(a.ndim), key=axes.__getitem__))
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(ctx.inverse)


class BroadcastTo(Function):
    """out = a broadcast to `shape` (a read-only view).
    VJP: da = g summed over the broadcast axes (done by the engine's unbroadcast)."""

    rule = "broadcast_to: the gradient is summed over the copies"

    @staticmethod
    def forward(ctx, a, *, shape):
        return get_array_module(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g


def normalize_index(index):
    """Turn tensors and lists inside an index into arrays, so the index can be kept and reused."""
    from autograd.tensor import Tensor

    def one(i):
        if isinstance(i, Tensor):
            return i.data
        if isinstance(i, list):
            return index_array(i)
        return i

    return tuple(one(i) for i in index) if isinstance(index, tuple) else one(index)


def _has_integer_array(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "dtype") and i.dtype.kind in "iu" for i in parts)


class GetItem(Function):
    """out = a[index] (slices, integers, integer arrays with repeats, boolean masks).
    VJP: da = zeros like a, with g added at `index`; repeated integer indices accumulate
    (scatter-add), never overwrite."""

    rule = "getitem: the gradient is scattered back, repeats added"

    @staticmethod
    def forward(ctx, a, *, index):
        xp = get_array_module(a)
        if xp is not get_array_module(*(index if isinstance(index, tuple) else (index,))):
            index = _index_to(index, xp)
        ctx.in_shape = a.shape
        ctx.index = _index_copy(index)  # the caller may change their index array afterwards
        return a[index]

    @staticmethod
    def backward(ctx, g):
        xp = get_array_module(g)
        grad = xp.zeros(ctx.in_shape, dtype=g.dtype)
        if _has_integer_array(ctx.index):
            scatter_add(grad, ctx.index, g)
        else:  # slices and boolean masks select each element at most once
            grad[ctx.index] = g
        return grad


def _index_copy(index):
    def one(i):
        return i.copy() if hasattr(i, "dtype") and getattr(i, "ndim", 0) > 0 else i

    return tuple(one(i) for i in index) if isinstance(index, tuple) else one(index)


def _index_to(index, xp):
    def one(i):
        return xp.asarray(i) if hasattr(i, "dtype") else i

    return tuple(one(i) for i in index) if isinstance(index, tuple) else one(index)


class Concatenate(Function):
    """out = concatenate(arrays, axis).  VJP: each input gets its slice of g along `axis`."""

    rule = "concatenate: the gradient is split back into pieces"

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        xp = get_array_module(*arrays)
        ctx.axis = axis % arrays[0].ndim
        ctx.sizes = [a.shape[ctx.axis] for a in arrays]
        return xp.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = get_array_module(g)
        bounds = [sum(ctx.sizes[: i + 1]) for i in range(len(ctx.sizes) - 1)]
        return tuple(xp.split(g, bounds, axis=ctx.axis))


class Stack(Function):
    """out = stack(arrays, axis) along a new axis.  VJP: input i gets g taken at index i of
    that axis."""

    rule = "stack: the gradient is unstacked"

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        xp = get_array_module(*arrays)
        out = xp.stack(arrays, axis=axis)
        ctx.axis = axis % out.ndim
        return out

    @staticmethod
    def backward(ctx, g):
        xp = get_array_module(g)
        return tuple(xp.take(g, i, axis=ctx.axis) for i in range(g.shape[ctx.axis]))


class ToDevice(Function):
    """out = a copied to `device` ('cpu' or 'cuda').  VJP: da = g copied back."""

    rule = "to: the gradient is copied back"

    @staticmethod
    def forward(ctx, a, *, device):
        ctx.src = "cuda" if type(a).__module__.startswith("cupy") else "cpu"
        return to_device(a, device)

    @staticmethod
    def backward(ctx, g):
        return to_device(g, ctx.src)


def concatenate(tensors, axis=0):
    """Differentiable `numpy.concatenate`."""
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """Differentiable `numpy.stack`."""
    return Stack.apply(*tensors, axis=axis)


def split(t, indices_or_sections, axis=0):
    """Differentiable `numpy.split`: each piece is a slice (a GetItem), so its gradient flows
    back into the right part of `t`."""
    n = t.shape[axis]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError(
                f"split: axis {axis} of length {n} does not divide into {indices_or_sections} "
                "equal sections"
            )
        step = n // indices_or_sections
        bounds = list(range(step, n, step))
    else:
        bounds = list(indices_or_sections)
    starts, stops = [0, *bounds], [*bounds, n]
    axis = axis % t.ndim
    pieces = []
    for start, stop in zip(starts, stops):
        index = (slice(None),) * axis + (slice(start, stop),)
        pieces.append(t[index])
    return pieces
