"""The array backend: NumPy always, CuPy when installed and asked for.

Every op reaches its array library through `get_array_module(*arrays)`, so the same code runs on
NumPy arrays (CPU) and CuPy arrays (GPU). This is the only module that imports `cupy`.
"""

from __future__ import annotations

import numpy as np

_default_device = "cpu"

# NumPy 1.x treats 0-d arrays as scalars when it picks a result dtype, so a 0-d float32 array
# times a Python float comes out float64 there; NumPy 2 (NEP 50) keeps float32, as it always
# does for arrays. The engine corrects for it (function.fix_0d_promotion).
NUMPY_1_PROMOTES_0D = int(np.__version__.split(".")[0]) < 2


def _cupy():
    """Import CuPy, or raise an error that says how to get it."""
    try:
        import cupy
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "device 'cuda' needs CuPy: pip install 'tinyllm[gpu]' (cupy-cuda12x) on a machine "
            "with an NVIDIA GPU"
        ) from err
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        cupy = _cupy()
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cupy_array(x) -> bool:
    # Checked by module name so that NumPy-only machines never import cupy.
    return type(x).__module__.startswith("cupy")


def get_array_module(*arrays):
    """The array library (numpy or cupy) of the given arrays; numpy when none is a CuPy array."""
    for a in arrays:
        if is_cupy_array(a):
            return _cupy()
    return np


def device_of(x) -> str:
    return "cuda" if is_cupy_array(x) else "cpu"


def check_device(name: str) -> str:
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: expected 'cpu' or 'cuda'")
    return name


def set_default_device(device: str) -> None:
    """Where `autograd.tensor(...)` puts new arrays unless told otherwise ('cpu' or 'cuda')."""
    global _default_device
    check_device(device)
    if device == "cuda":
        _cupy()
    _default_device = device


def get_default_device() -> str:
    return _default_device


def to_device(x, device: str):
    """Move an array to 'cpu' (NumPy) or 'cuda' (CuPy); a no-op when already there."""
    check_device(device)
    if device == "cpu":
        return asnumpy(x)
    cupy = _cupy()
    return x if is_cupy_array(x) else cupy.asarray(x)


def asnumpy(x):
    """A NumPy array from a NumPy or CuPy array (copying from the GPU when needed)."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


# 256 KB of float32: a block's temporaries stay in the CPU cache. Read at each call (never
# bound as a default argument), so tests can shrink it to run the blocked paths with many blocks.
BLOCK_ELEMENTS = 1 << 17


def flat_blocks(size, xp, block=None):
    """Slices cutting `size` elements into cache-sized blocks (BLOCK_ELEMENTS unless `block`),
    for element-wise work that makes several passes: done block by block, each pass reads the
    cache instead of main memory. One block on a GPU, where a kernel per pass over the whole
    array is the fast way."""
    block = BLOCK_ELEMENTS if block is None else block
    if xp is not np or size <= block:
        return [slice(None)]
    return [slice(i, min(i + block, size)) for i in range(0, size, block)]


def outer_into(u, v, out) -> None:
    """out = u v^T, for u a vector over the rows of `out` and v one over its columns. On NumPy a
    matrix product with an inner dimension of 2 (u beside a column of zeros, v over a row of
    zeros): the BLAS writes it at memory speed, 2-3x faster than NumPy's broadcast multiply (an
    inner dimension of 1 takes a slow path in the BLAS). On a GPU the broadcast multiply."""
    if is_cupy_array(out):
        get_array_module(out).multiply(u[:, None], v, out=out)
        return
    left = np.zeros((u.shape[0], 2), dtype=out.dtype)
    left[:, 0] = u
    right = np.zeros((2, v.shape[0]), dtype=out.dtype)
    right[0] = v
    np.matmul(left, right, out=out)


def index_array(values):
    """A host (NumPy) integer or boolean array from a Python list used as an index."""
    return np.asarray(values)


def scatter_add(target, index, values) -> None:
    """`target[index] += values` with repeated indices accumulated (np.add.at / cupyx)."""
    if is_cupy_array(target):
        import cupyx

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)
