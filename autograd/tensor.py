"""`Tensor`: an array, the gradient that flows back to it, and the op that produced it.

A tensor wraps a NumPy (or CuPy) array in `.data`. When it requires grad and was produced by an
op, `._node` records that op and its inputs; `backward()` walks those records in reverse (see
engine.py). Methods and operators mirror NumPy's names and arguments.
"""

from __future__ import annotations

import numpy as np

from autograd import backend
from autograd.backend import asnumpy, device_of, get_array_module, is_cupy_array

_default_float = np.float32


def set_default_dtype(dtype) -> None:
    """The float dtype given to Python floats and lists by `tensor(...)` (float32 unless set)."""
    global _default_float
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"default dtype must be a float type, got {dtype}")
    _default_float = dtype.type


def get_default_dtype():
    return np.dtype(_default_float)


def _as_array(data, dtype=None):
    """Arrays keep their dtype; Python floats and lists become the default float dtype.
    NumPy array subclasses (np.memmap) become plain arrays over the same memory, dtype kept."""
    if isinstance(data, np.ndarray) or is_cupy_array(data):
        if type(data) is not np.ndarray and not is_cupy_array(data):
            data = data.view(np.ndarray)
        return data if dtype is None or data.dtype == dtype else data.astype(dtype)
    if isinstance(data, Tensor):
        raise TypeError("Tensor(...) got a Tensor; use .detach() or .data to get its array")
    from_python = not isinstance(data, np.generic)
    arr = np.asarray(data, dtype=dtype)
    if dtype is None and from_python and arr.dtype == np.float64:
        arr = arr.astype(_default_float)
    return arr


class Tensor:
    """A node of the computation graph. See the module docstring."""

    __slots__ = ("data", "grad", "requires_grad", "name", "_node", "_hooks", "_retains_grad",
                 "_version", "__weakref__")
    # NumPy defers to our reflected operators (ndarray + Tensor calls Tensor.__radd__).
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, name=None, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.name = name
        self._node = None
        self._hooks = ()
        self._retains_grad = False
        self._version = 0  # raised by in-place updates; see function.modifying
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ---- basic properties -------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: device_of(self.data))

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        """The op that produced this tensor (a Function subclass), or None for a leaf."""
        return None if self._node is None else self._node.fn

    def requires_grad_(self, flag=True):
        if not flag and self._node is not None:
            raise RuntimeError(
                f"requires_grad_(False) on the output of '{self._node.fn.name}' would cut the "
                "graph behind it; only leaves can change it. Use .detach() for a copy cut off "
                "from the graph"
            )
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"only floating-point tensors can require gradients; this one is {self.dtype} "
                "(cast it first, e.g. tensor(x, dtype=np.float32))"
            )
        self.requires_grad = bool(flag)
        return self

    def __repr__(self):
        label = f", name={self.name!r}" if self.name else ""
        grad = f", grad_fn={self._node.fn.name}" if self._node is not None else (
            ", requires_grad=True" if self.requires_grad else "")
        body = np.array2string(asnumpy(self.data), precision=4, threshold=20, separator=", ")
        return f"tensor({body}, dtype={self.dtype}{grad}{label})"

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(
                f"the truth value of a tensor of shape {tuple(self.shape)} is ambiguous; use "
                "(t > 0).any() or .all() on its data"
            )
        return bool(self.data.item())

    __hash__ = object.__hash__

    # ---- autograd ------------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate the gradient of this tensor into `.grad` of every leaf that requires it.

        `grad` is the upstream gradient (a cotangent of this tensor's shape); it may be omitted
        only for a single-element tensor, where it defaults to 1.
        """
        from autograd.engine import backward

        backward(self, grad, retain_graph)

    def retain_grad(self):
        """Keep `.grad` on this intermediate (non-leaf) tensor after backward."""
        self._retains_grad = True
        return self

    def register_hook(self, fn):
        """Call `fn(grad)` when this tensor's gradient is complete; a non-None result replaces it.
        Returns a handle whose `remove()` unregisters the hook."""
        self._hooks = (*self._hooks, fn)
        return _HookHandle(self, fn)

    def zero_grad(self):
        self.grad = None

    def detach(self):
        """A new leaf sharing this tensor's data, cut off from the graph."""
        return Tensor(self.data, name=self.name)

    def item(self):
        return self.data.item()

    def numpy(self):
        """The data as a NumPy array (copied from the GPU when needed)."""
        return asnumpy(self.data)

    def __array__(self, dtype=None, copy=None):
        arr = asnumpy(self.data)
        return arr if dtype is None else arr.astype(dtype)

    def to(self, device):
        """This tensor on 'cpu' or 'cuda' (a differentiable copy; self when already there)."""
        backend.check_device(device)
        if device == self.device:
            return self
        return _shape.ToDevice.apply(self, device=device)

    def astype(self, dtype):
        """A differentiable cast to another float dtype (the gradient is cast back)."""
        dtype = np.dtype(dtype)
        return self if dtype == self.dtype else _ew.Cast.apply(self, dtype=dtype)

    # ---- operators -----------------------------------------------------------------------------
    def _lift(self, other):
        """Wrap a scalar or array as a constant tensor. Numbers, NumPy scalars included, take
        this tensor's float dtype (as in PyTorch, a scalar never promotes a tensor)."""
        if isinstance(other, Tensor):
            return other
        xp = get_array_module(self.data)
        other = _number(other)
        if isinstance(other, (int, float, bool)) and self.dtype.kind == "f":
            return Tensor(xp.asarray(other, dtype=self.dtype))
        return Tensor(xp.asarray(other))

    def __add__(self, other):
        return _ew.Add.apply(self, self._lift(other))

    def __radd__(self, other):
        return _ew.Add.apply(self._lift(other), self)

    def __sub__(self, other):
        return _ew.Sub.apply(self, self._lift(other))

    def __rsub__(self, other):
        return _ew.Sub.apply(self._lift(other), self)

    def __mul__(self, other):
        return _ew.Mul.apply(self, self._lift(other))

    def __rmul__(self, other):
        return _ew.Mul.apply(self._lift(other), self)

    def __truediv__(self, other):
        return _ew.Div.apply(self, self._lift(other))

    def __rtruediv__(self, other):
        return _ew.Div.apply(self._lift(other), self)

    def __pow__(self, exponent):
        exponent = _number(exponent)
        if isinstance(exponent, (int, float)):
            return _ew.PowScalar.apply(self, exponent=exponent)
        return _ew.Pow.apply(self, self._lift(exponent))

    def __rpow__(self, base):
        return _ew.Pow.apply(self._lift(base), self)

    def __matmul__(self, other):
        return _la.MatMul.apply(self, self._lift(other))

    def __rmatmul__(self, other):
        return _la.MatMul.apply(self._lift(other), self)

    def __neg__(self):
        return _ew.Neg.apply(self)

    def __getitem__(self, index):
        return _shape.GetItem.apply(self, index=_shape.normalize_index(index))

    # Comparisons give plain boolean arrays: they have no gradient.
    def __lt__(self, other):
        return self.data < _raw(other)

    def __le__(self, other):
        return self.data <= _raw(other)

    def __gt__(self, other):
        return self.data > _raw(other)

    def __ge__(self, other):
        return self.data >= _raw(other)

    def __eq__(self, other):
        return self.data == _raw(other)

    def __ne__(self, other):
        return self.data != _raw(other)

    # ---- elementwise -------------------------------------------------------------------------
    def exp(self):
        return _ew.Exp.apply(self)

    def log(self):
        return _ew.Log.apply(self)

    def sqrt(self):
        return _ew.Sqrt.apply(self)

    def tanh(self):
        return _act.Tanh.apply(self)

    def sigmoid(self):
        return _act.Sigmoid.apply(self)

    def relu(self):
        return _act.Relu.apply(self)

    def gelu(self):
        return _act.Gelu.apply(self)

    def silu(self):
        return _act.Silu.apply(self)

    def abs(self):
        return _ew.Abs.apply(self)

    def clip(self, min=None, max=None):
        return _ew.Clip.apply(self, lo=_number(min), hi=_number(max))

    def maximum(self, other):
        return _ew.Maximum.apply(self, self._lift(other))

    def minimum(self, other):
        return _ew.Minimum.apply(self, self._lift(other))

    # ---- reductions --------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return _red.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _red.Mean.apply(self, axis=axis, keepdims=keepdims)

    def var(self, axis=None, ddof=0, keepdims=False):
        return _red.Var.apply(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _red.Max.apply(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return _red.Min.apply(self, axis=axis, keepdims=keepdims)

    def logsumexp(self, axis=None, keepdims=False):
        return _red.LogSumExp.apply(self, axis=axis, keepdims=keepdims)

    # ---- shape -------------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _shape.Reshape.apply(self, shape=tuple(shape))

    def flatten(self):
        return self.reshape(-1)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return _shape.Transpose.apply(self, axes=tuple(axes) if axes else None)

    permute = transpose

    @property
    def T(self):
        return self.transpose()

    def swapaxes(self, axis1, axis2):
        axes = list(range(self.ndim))
        axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
        return self.transpose(*axes)

    def broadcast_to(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _shape.BroadcastTo.apply(self, shape=tuple(shape))

    expand = broadcast_to

    def squeeze(self, axis=None):
        xp = get_array_module(self.data)
        return self.reshape(xp.squeeze(self.data, axis=axis).shape)

    def unsqueeze(self, axis):
        xp = get_array_module(self.data)
        return self.reshape(xp.expand_dims(self.data, axis).shape)

    def split(self, indices_or_sections, axis=0):
        """Like numpy.split: a list of views, each a differentiable slice."""
        from autograd.ops.shape import split

        return split(self, indices_or_sections, axis)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _number(x):
    """A NumPy scalar (np.float64(2.5), np.int64(2)) as a Python number; anything else as is.
    np.float64 subclasses float, yet NumPy 2 lets it promote float32 arrays to float64."""
    return x.item() if isinstance(x, np.generic) and x.dtype.kind in "biuf" else x


class _HookHandle:
    def __init__(self, tensor, fn):
        self.tensor, self.fn = tensor, fn

    def remove(self):
        self.tensor._hooks = tuple(h for h in self.tensor._hooks if h is not self.fn)


def tensor(data, requires_grad=False, dtype=None, device=None, name=None, copy=True):
    """Make a leaf tensor. Arrays keep their dtype; Python floats become float32 by default.
    `device` is 'cpu' or 'cuda' (default: `set_default_device`).

    The tensor gets its own copy of an array, so an optimizer updating it in place never
    writes into the caller's array, and the caller changing theirs never changes the tensor.
    `copy=False` shares the array instead when no conversion is needed (no dtype change, same
    device): cheaper for big inputs, but then the two are one; while a graph saved it, a NumPy
    array is read-only (see autograd.function)."""
    data = _raw(data)
    arr = _as_array(data, None if dtype is None else np.dtype(dtype))
    device = device or backend.get_default_device()
    moved = backend.to_device(arr, device)
    if copy and (moved is data or (isinstance(data, np.ndarray) and moved.base is data)):
        moved = moved.copy()
    return Tensor(moved, requires_grad=requires_grad, name=name)


# Op modules import Function, which imports this module: import them after Tensor exists.
from autograd.ops import activations as _act  # noqa: E402
from autograd.ops import elementwise as _ew  # noqa: E402
from autograd.ops import linalg as _la  # noqa: E402
from autograd.ops import reduce as _red  # noqa: E402
from autograd.ops import shape as _shape  # noqa: E402
