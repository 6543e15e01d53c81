"""2-D matrix products through Intel's MKL when it is installed on an Intel CPU, NumPy's `@`
otherwise.

NumPy's wheels carry OpenBLAS. On one of this project's machines (2 Xeon cores with AVX-512)
its single-precision products run 10-15% slower than MKL's on the shapes a GPT makes
(benchmarks/bench_gemm.py measures both), and the products are most of a training step. MKL
ships as a plain wheel (`pip install mkl`, the `mkl` extra), so when its runtime library sits in
this environment the engine calls `cblas_sgemm` / `cblas_dgemm` on it through ctypes: no
compiler, no build, and the arrays are passed by pointer (ctypes releases the GIL for the call).
On an AMD EPYC (2 cores, AVX2) MKL was the slower one: products 2-5% (bench_gemm), the default
training step 8-17% (bench_train --config small, two runs: 3,927 against 4,272 and 2,304 against
2,765 tokens/s, OpenBLAS faster in every round). So by default ('auto') MKL is used only where
the CPU says GenuineIntel; `AUTOGRAD_BLAS=mkl` uses it on any CPU (its absence is then an error),
`=numpy` never.

Only NumPy arrays of float32 or float64 in a layout BLAS can read (rows or columns contiguous,
as a transposed view is) take that path; everything else, and every array when MKL is not used,
goes to NumPy. Both give the same result to rounding.

MKL's OpenMP workers busy-wait 200 ms after each product by default, holding the other cores
through the element-wise work in between (the same trouble as OpenBLAS's, see tinyllm/blas_spin);
KMP_BLOCKTIME is set to 1 ms before MKL loads unless the user set it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

from autograd.backend import get_array_module

ENV_CHOICE = "AUTOGRAD_BLAS"  # "numpy" turns MKL off; "mkl" makes its absence an error
SPIN_VAR, SPIN_DEFAULT = "KMP_BLOCKTIME", "1"  # milliseconds
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

_lib = None  # the loaded MKL runtime; False once looked for and not found


def _candidates():
    """Where a pip- or conda-installed MKL puts its runtime: this environment's lib/. A system-wide
    MKL elsewhere is not picked up, so what a process uses follows from its environment."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for name in ("libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so", "libmkl_rt.2.dylib"):
            yield Path(prefix) / "lib" / name


def check_choice() -> str:
    """AUTOGRAD_BLAS ('auto' when unset), checked without loading anything: a bad value, or 'mkl'
    with no MKL in this environment, is a one-line error. The `tinyllm` command calls it before
    any work starts (the library itself is loaded at the first product)."""
    choice = os.environ.get(ENV_CHOICE, "auto").lower()
    if choice not in ("auto", "mkl", "numpy"):
        raise ValueError(f"{ENV_CHOICE}={choice!r}: expected 'auto', 'mkl' or 'numpy'")
    if choice == "mkl" and not any(path.exists() for path in _candidates()):
        raise RuntimeError(f"{ENV_CHOICE}=mkl but no MKL runtime was found: "
                           "pip install mkl (or the project's `mkl` extra)")
    return choice


def intel_cpu() -> bool:
    """Whether this CPU is Intel's (Linux's /proc/cpuinfo; True where that cannot be read, as
    before this check existed: the `mkl` extra installs on Linux only)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    return True


def _load():
    """The MKL runtime with its gemm signatures declared, or None (looked for once)."""
    global _lib
    if _lib is None:
        _lib = False
        choice = check_choice()
        if choice == "mkl" or (choice == "auto" and intel_cpu()):
            os.environ.setdefault(SPIN_VAR, SPIN_DEFAULT)  # read once, when MKL starts
            for path in _candidates():
                try:
                    lib = ctypes.CDLL(str(path))
                except OSError:
                    continue
                for name, real in (("cblas_sgemm", ctypes.c_float), ("cblas_dgemm", ctypes.c_double)):
                    fn = getattr(lib, name)
                    i, p = ctypes.c_int, ctypes.c_void_p
                    fn.argtypes = [i, i, i, i, i, i, real, p, i, p, i, real, p, i]
                    fn.restype = None
                local = lib.MKL_Set_Num_Threads_Local  # see set_threads_here
                local.argtypes, local.restype = [ctypes.c_int], ctypes.c_int
                _lib = lib
                break
            if choice == "mkl" and not _lib:
                raise RuntimeError(f"{ENV_CHOICE}=mkl but no MKL runtime was found: "
                                   "pip install mkl (or the project's `mkl` extra)")
    return _lib or None


def using_mkl() -> bool:
    """Whether 2-D float products go to MKL in this process."""
    return _load() is not None


def library() -> str:
    """'mkl' or 'numpy' (the BLAS NumPy was built with: OpenBLAS in its wheels), for reports."""
    return "mkl" if using_mkl() else "numpy"


def set_threads_here(n: int) -> int:
    """How many threads MKL may use for the products this thread calls (0: back to the
    process-wide setting); returns the previous value. A no-op returning 0 without MKL.
    (MKL keeps this per thread, so two threads computing at once can each ask for one.)"""
    lib = _load()
    return 0 if lib is None else lib.MKL_Set_Num_Threads_Local(int(n))


def _operand(a):
    """(transpose flag, leading dimension) telling BLAS how to read 2-D `a`, or None if it can't:
    rows contiguous (stride 1 along a row) is read as is, columns contiguous as a transpose."""
    size = a.itemsize
    s0, s1 = a.strides
    rows, cols = a.shape
    if (s1 == size or cols == 1) and s0 % size == 0 and s0 // size >= max(cols, 1):
        return NO_TRANS, s0 // size
    if (s0 == size or rows == 1) and s1 % size == 0 and s1 // size >= max(rows, 1):
        return TRANS, s1 // size
    if a.flags.c_contiguous:  # a single row or column with odd strides
        return NO_TRANS, max(cols, 1)
    return None


def matmul(a, b, out=None, accumulate=False, bias=None):
    """out = a @ b (+ bias) for 2-D a (m, k) and b (k, n), or out += a @ b with accumulate;
    returns out (a new array when out is None). MKL's gemm when it applies, computing
    C = A B + beta C: beta 1 adds onto what C holds (the old out, or the bias written into it
    first, which saves the separate pass of `out += bias`). NumPy (or CuPy) otherwise."""
    if accumulate and bias is not None:
        raise ValueError("matmul: accumulate and bias together are ambiguous; add the bias to out")
    lib = _load()
    fast = (lib is not None and type(a) is np.ndarray and type(b) is np.ndarray
            and a.ndim == b.ndim == 2 and a.dtype == b.dtype and a.dtype in (np.float32, np.float64)
            and a.shape[1] == b.shape[0] and 0 not in a.shape and 0 not in b.shape)
    if fast:
        m, n = a.shape[0], b.shape[1]
        if out is None:  # nothing to add onto
            out, accumulate = np.empty((m, n), dtype=a.dtype), False
        fa, fb = _operand(a), _operand(b)
        fast = (fa is not None and fb is not None and type(out) is np.ndarray
                and out.dtype == a.dtype and out.shape == (m, n) and out.flags.c_contiguous
                and not np.may_share_memory(out, a) and not np.may_share_memory(out, b))
    if not fast:
        if out is None:
            out = a @ b
        elif accumulate:
            out += a @ b
        else:
            get_array_module(a).matmul(a, b, out=out)
        if bias is not None:
            out += bias
        return out
    if bias is not None:
        out[...] = bias
    gemm = lib.cblas_sgemm if a.dtype == np.float32 else lib.cblas_dgemm
    beta = 1.0 if accumulate or bias is not None else 0.0
    gemm(ROW_MAJOR, fa[0], fb[0], m, n, a.shape[1], 1.0, a.ctypes.data, fa[1],
         b.ctypes.data, fb[1], beta, out.ctypes.data, n)
    return out
