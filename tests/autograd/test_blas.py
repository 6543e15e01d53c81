"""autograd.blas.matmul: MKL's gemm when it is installed, NumPy's `@` otherwise, equal to `@` in
every layout BLAS reads directly (rows or columns contiguous, a row stride wider than a row) and in
the layouts it falls back on (negative or broadcast strides, shared memory, other dtypes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autograd import blas

LAYOUTS = {
    "c": lambda m: m,
    "fortran": np.asfortranarray,
    "transposed_view": lambda m: np.ascontiguousarray(m.T).T,
    "row_slice_of_wider": lambda m: np.concatenate([m, m[:, :3]], axis=1)[:, : m.shape[1]],
    "reversed_rows": lambda m: np.ascontiguousarray(m[::-1])[::-1],
    "every_other_column": lambda m: np.repeat(m, 2, axis=1)[:, ::2],
}


MKL_INSTALLED = any(path.exists() for path in blas._candidates())


@pytest.fixture(autouse=True)
def _mkl_where_installed(monkeypatch):
    """Where MKL is installed, every test here goes through it, on any CPU (by default it is
    used on Intel's only); the library is loaded afresh and put back afterwards."""
    if MKL_INSTALLED:
        monkeypatch.setenv(blas.ENV_CHOICE, "mkl")
        monkeypatch.setattr(blas, "_lib", None)


def _pair(dtype, m=37, k=29, n=23, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout_a", sorted(LAYOUTS))
@pytest.mark.parametrize("layout_b", ["c", "transposed_view", "every_other_column"])
def test_matmul_equals_numpy_in_every_layout(dtype, layout_a, layout_b):
    a, b = _pair(dtype)
    a2, b2 = LAYOUTS[layout_a](a), LAYOUTS[layout_b](b)
    assert np.array_equal(a2, a) and np.array_equal(b2, b)  # same values, other layout
    got = blas.matmul(a2, b2)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, a @ b, rtol=tol, atol=tol)
    assert got.dtype == dtype


@pytest.mark.parametrize("shape", [(1, 5, 4), (6, 1, 4), (6, 5, 1), (1, 1, 1)])
def test_matmul_with_unit_axes(shape):
    a, b = _pair(np.float64, *shape)
    np.testing.assert_allclose(blas.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blas.matmul(b.T, a.T), (a @ b).T, rtol=1e-12, atol=1e-12)


def test_out_accumulate_and_bias():
    a, b = _pair(np.float64)
    rng = np.random.default_rng(1)
    start = rng.standard_normal((a.shape[0], b.shape[1]))
    bias = rng.standard_normal(b.shape[1])

    out = start.copy()
    assert blas.matmul(a, b, out=out, accumulate=True) is out
    np.testing.assert_allclose(out, start + a @ b, rtol=1e-12, atol=1e-12)

    out = start.copy()
    assert blas.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)  # the old contents are overwritten

    np.testing.assert_allclose(blas.matmul(a, b, bias=bias), a @ b + bias, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blas.matmul(a, b, accumulate=True), a @ b, rtol=1e-12, atol=1e-12)

    rows = np.zeros((a.shape[0] + 4, b.shape[1]))
    blas.matmul(a, b, out=rows[2:-2])  # a block of rows of a larger array, as the LM head does
    np.testing.assert_allclose(rows[2:-2], a @ b, rtol=1e-12, atol=1e-12)
    assert not rows[:2].any() and not rows[-2:].any()

    with pytest.raises(ValueError, match="accumulate and bias"):
        blas.matmul(a, b, accumulate=True, bias=bias)


def test_out_that_overlaps_an_input_still_gives_the_product():
    rng = np.random.default_rng(2)
    square = rng.standard_normal((8, 8))
    expected = square @ square
    blas.matmul(square, square.copy(), out=square)  # NumPy's matmul handles the overlap
    np.testing.assert_allclose(square, expected, rtol=1e-12, atol=1e-12)


def test_other_dtypes_and_empty_operands_go_to_numpy():
    ints = np.arange(12).reshape(3, 4)
    assert np.array_equal(blas.matmul(ints, ints.T), ints @ ints.T)
    mixed = blas.matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float64))
    assert mixed.dtype == np.float64 and np.all(mixed == 3)
    empty = blas.matmul(np.ones((0, 3), np.float32), np.ones((3, 2), np.float32))
    assert empty.shape == (0, 2)
    zero_k = blas.matmul(np.ones((2, 0)), np.ones((0, 3)), bias=np.ones(3))
    assert np.array_equal(zero_k, np.ones((2, 3)))


def _probe(choice):
    env = dict(os.environ, AUTOGRAD_BLAS=choice)
    code = "from autograd import blas; print(blas.using_mkl())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_environment_variable_chooses_the_library():
    assert _probe("numpy").stdout.strip() == "False"
    bad = _probe("openblas")
    assert bad.returncode != 0 and "AUTOGRAD_BLAS='openblas'" in bad.stderr
    forced = _probe("mkl")
    if MKL_INSTALLED:
        assert forced.stdout.strip() == "True"
    else:
        assert forced.returncode != 0 and "pip install mkl" in forced.stderr


@pytest.mark.parametrize("intel", [True, False])
def test_auto_uses_mkl_on_intel_cpus_only(monkeypatch, intel):
    monkeypatch.setenv(blas.ENV_CHOICE, "auto")
    monkeypatch.setattr(blas, "_lib", None)
    monkeypatch.setattr(blas, "intel_cpu", lambda: intel)
    assert blas.using_mkl() == (intel and MKL_INSTALLED)
    assert blas.library() == ("mkl" if intel and MKL_INSTALLED else "numpy")


def test_intel_cpu_reads_the_vendor():
    assert isinstance(blas.intel_cpu(), bool)
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if "vendor_id" in text:
        assert blas.intel_cpu() == ("GenuineIntel" in text)


class _CountingMKL:
    """Stands in for the loaded library: counts the gemm calls, then makes them."""

    def __init__(self, lib):
        self.lib, self.calls = lib, 0

    def __getattr__(self, name):
        def call(*args):
            self.calls += 1
            return getattr(self.lib, name)(*args)
        return call


@pytest.mark.skipif(not MKL_INSTALLED, reason="needs MKL (pip install mkl)")
def test_readable_layouts_go_to_mkl_and_the_rest_to_numpy(monkeypatch):
    counter = _CountingMKL(blas._load())
    monkeypatch.setattr(blas, "_lib", counter)
    a, b = _pair(np.float32)
    for name in ("c", "fortran", "transposed_view", "row_slice_of_wider"):
        before = counter.calls
        blas.matmul(LAYOUTS[name](a), b)
        assert counter.calls == before + 1, name
    for a2 in (LAYOUTS["reversed_rows"](a), LAYOUTS["every_other_column"](a), a.astype(np.float16)):
        before = counter.calls
        blas.matmul(a2, b.astype(a2.dtype))
        assert counter.calls == before
    assert os.environ.get(blas.SPIN_VAR)  # MKL's spin wait was bounded before it loaded
