"""A strict stand-in for CuPy, so that device mistakes show up on a machine without a GPU.

Real CuPy keeps host (NumPy) and device (CuPy) data apart and refuses to mix them silently:

    cupy.exp(numpy_array), device + numpy_array, cupy.where(numpy_mask, device, 0)
                                        TypeError: Unsupported type <class 'numpy.ndarray'>
    numpy.asarray(device), np.array(device), device.tolist() via NumPy
                                        TypeError: Implicit conversion to a NumPy array is not
                                        allowed. Please use `.get()` ...
    device[...] = numpy_array           TypeError (no implicit host-to-device copy)

while these are fine: cupy.asarray(numpy_array) (an explicit copy to the device), indexing a
device array with a NumPy index array, NumPy scalars and Python numbers next to device arrays,
NumPy functions and ufuncs applied to device arrays only (they dispatch to CuPy, through
__array_function__ / __array_ufunc__), and reductions returning 0-d device arrays.

Here a device array is an `ndarray` wrapping a NumPy array; its class lives in a module whose
name starts with "cupy", which is how `autograd.backend.is_cupy_array` recognises device
arrays, and `installed()` puts this module in `sys.modules` as `cupy` (and a `cupyx` with
`scatter_add`) for the duration of a test. Every operation unwraps device arrays, refuses
NumPy arrays where CuPy would, runs NumPy, and wraps the result again.

What it does not model: speed, asynchronous execution, GPU rounding, functions CuPy lacks.
"""

from __future__ import annotations

import contextlib
import operator
import sys
import types

import numpy as np

MODULE_NAME = "cupy_fake"  # starts with "cupy": autograd.backend treats these as device arrays


class HostDeviceMixError(TypeError):
    """A NumPy (host) array was used where CuPy accepts only device arrays."""


def _unwrap(x, host_ok):
    """`x` with every device array replaced by its NumPy array; NumPy arrays raise unless
    `host_ok` (lists, tuples and dicts are searched)."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        if host_ok:
            return x
        raise HostDeviceMixError(
            f"Unsupported type {type(x)} (shape {x.shape}, {x.dtype}): a NumPy (host) array was "
            "mixed with device arrays; real CuPy refuses this. Move it to the device first "
            "(autograd.backend.to_device / xp.asarray)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, host_ok) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, host_ok) for k, v in x.items()}
    return x


def _wrap(x):
    """NumPy results back to device arrays; NumPy scalars become 0-d arrays, as in CuPy."""
    if isinstance(x, np.ndarray):
        return ndarray(x)
    if isinstance(x, np.generic):
        return ndarray(np.asarray(x))
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap(v) for v in x)
    return x


def _call(fn, args, kwargs, host_ok=False):
    return _wrap(fn(*_unwrap(args, host_ok), **_unwrap(kwargs, host_ok)))


class ndarray:
    """A device array: a NumPy array that refuses to be mixed with host arrays."""

    __slots__ = ("_a",)
    __hash__ = None  # as cupy.ndarray (and numpy.ndarray): unhashable

    def __init__(self, a):
        self._a = a

    # ---- attributes and conversions ----------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    T = property(lambda self: ndarray(self._a.T))

    @property
    def base(self):
        base = self._a.base
        return ndarray(base) if isinstance(base, np.ndarray) else base

    @property
    def device(self):
        return "fake-cuda:0"

    def get(self, stream=None):
        """The explicit device-to-host copy."""
        return self._a.copy()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, args, kwargs)

    def __getattr__(self, name):  # methods: reshape, sum, astype, copy, item, max, ...
        if name.startswith("__"):  # never __array_interface__ and friends: no silent transfer
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return attr

        def method(*args, **kwargs):
            return _call(attr, args, kwargs)

        return method

    def __repr__(self):
        return f"{MODULE_NAME}.array({np.array2string(self._a, separator=', ')}, dtype={self.dtype})"

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return operator.index(self._a)

    # ---- indexing ----------------------------------------------------------------------------
    def __getitem__(self, index):
        return _wrap(self._a[_unwrap(index, host_ok=True)])  # host index arrays are allowed

    def __setitem__(self, index, value):
        self._a[_unwrap(index, host_ok=True)] = _unwrap(value, host_ok=False)


def _binary(op, reflected=False):
    if reflected:
        return lambda self, other: _call(op, (other, self), {})
    return lambda self, other: _call(op, (self, other), {})


def _inplace(op):
    def method(self, other):
        op(self._a, _unwrap(other, host_ok=False))
        return self  # the same object, as NumPy and CuPy: ids matter to the engine

    return method


for _name, _op in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("floordiv", operator.floordiv),
                   ("mod", operator.mod), ("pow", operator.pow), ("matmul", operator.matmul),
                   ("and", operator.and_), ("or", operator.or_), ("xor", operator.xor)]:
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
    setattr(ndarray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}")))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(getattr(operator, _name)))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", (lambda op: lambda self: _call(op, (self,), {}))(
        getattr(operator, _name)))
ndarray.__module__ = MODULE_NAME


# ---- the module --------------------------------------------------------------------------------
_TRANSFERS = {"asarray", "array", "asanyarray", "ascontiguousarray"}  # host data allowed: a copy


def _transfer(fn):
    def call(obj, *args, **kwargs):
        if isinstance(obj, np.ndarray):
            obj = obj.copy()  # device memory is separate: never alias the host array
        return _call(fn, (obj, *args), kwargs, host_ok=True)

    return call


def _function(fn):
    def call(*args, **kwargs):
        return _call(fn, args, kwargs)

    return call


class _FakeModule(types.ModuleType):
    """Anything NumPy has, run on device arrays only; types and constants as they are."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):
            return attr
        wrapped = _transfer(attr) if name in _TRANSFERS else _function(attr)
        setattr(self, name, wrapped)  # cached: __getattr__ runs once per name
        return wrapped


class _Random:
    """cupy.random: draws on the device (here: a seeded NumPy generator, wrapped)."""

    def __init__(self):
        self._rng = np.random.default_rng(0)

    def seed(self, seed=None):
        self._rng = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64):
        return _wrap(self._rng.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=np.float64):
        return _wrap(self._rng.standard_normal(size, dtype=dtype))

    def randint(self, low, high=None, size=None, dtype=np.int64):
        return _wrap(self._rng.integers(low, high, size, dtype=dtype))


class _Device:
    def __init__(self, device=0):
        self.id = device

    def synchronize(self):
        pass


class _MemoryPool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


def _make_cupy():
    cupy = _FakeModule(MODULE_NAME, __doc__)
    cupy.ndarray = ndarray
    cupy.random = _Random()
    cupy.cuda = types.SimpleNamespace(Device=_Device,
                                      runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    _pool = _MemoryPool()
    cupy.get_default_memory_pool = lambda: _pool
    cupy.asnumpy = lambda a, stream=None: a.get() if isinstance(a, ndarray) else np.asarray(a)
    cupy.get_array_module = lambda *arrays: (
        cupy if any(isinstance(a, ndarray) for a in arrays) else np)
    cupy.is_available = lambda: True
    return cupy


def _scatter_add(a, slices, value):
    """cupyx.scatter_add: a[slices] += value with repeated indices accumulated."""
    if not isinstance(a, ndarray):
        raise TypeError(f"cupyx.scatter_add needs a device array, got {type(a)}")
    np.add.at(a._a, _unwrap(slices, host_ok=True), _unwrap(value, host_ok=False))


cupy = _make_cupy()
cupyx = types.ModuleType("cupyx_fake")
cupyx.scatter_add = _scatter_add


@contextlib.contextmanager
def installed():
    """Make `import cupy` / `import cupyx` give these fakes until the block ends."""
    saved = {name: sys.modules.get(name) for name in ("cupy", "cupyx")}
    sys.modules["cupy"], sys.modules["cupyx"] = cupy, cupyx
    try:
        yield cupy
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
