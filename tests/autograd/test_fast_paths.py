"""The speed-only code paths of the ops, each checked against the plain computation and by
finite differences (float64, random upstream gradients): the linear layer's bias gradient,
column sums as a product with a row of ones, the two-thread binary
ufunc, layer norm's row statistics without a squared array, the outer products it writes
with the BLAS, and the residual dropout's flat blocks."""

import numpy as np
import pytest

import autograd as ag
from autograd import functional as F
from autograd import parallel
from autograd.ops.nn import column_sums
from autograd.testing.gradcheck import gradcheck


@pytest.mark.parametrize("n_in, n_out", [(3, 7), (7, 3), (4, 4)])
def test_linear_with_bias_matches_numpy_and_gradchecks(n_in, n_out):
    rng = np.random.default_rng(n_in * 10 + n_out)
    x = rng.standard_normal((2, 5, n_in))
    w = rng.standard_normal((n_in, n_out))
    b = rng.standard_normal(n_out)
    out = F.linear(ag.tensor(x), ag.tensor(w), ag.tensor(b)).data
    np.testing.assert_allclose(out, x @ w + b, rtol=1e-12, atol=1e-12)
    assert gradcheck(F.linear, x, w, b)


def test_linear_gradients_against_numpy_with_a_random_cotangent():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((6, 3)), rng.standard_normal((3, 8)), rng.standard_normal(8)
    g = rng.standard_normal((6, 8))
    xt, wt, bt = (ag.tensor(a, requires_grad=True) for a in (x, w, b))
    F.linear(xt, wt, bt).backward(g)
    np.testing.assert_allclose(xt.grad, g @ w.T, rtol=1e-12)
    np.testing.assert_allclose(wt.grad, x.T @ g, rtol=1e-12)
    np.testing.assert_allclose(bt.grad, g.sum(axis=0), rtol=1e-12)


def test_column_sums_equal_numpys_sum_over_rows():
    a = np.random.default_rng(2).standard_normal((37, 5))
    np.testing.assert_allclose(column_sums(a), a.sum(axis=0), rtol=1e-12)
    assert column_sums(np.zeros((0, 3))).tolist() == [0.0, 0.0, 0.0]


@pytest.fixture
def two_threads_small_threshold(monkeypatch):
    before = parallel.num_threads()
    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "BINARY_MIN_ELEMENTS", 8)
    yield
    parallel.set_num_threads(before)


def test_binary_on_two_threads_matches_the_ufunc(two_threads_small_threshold):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    for ufunc in (np.add, np.multiply):
        out = parallel.binary(ufunc, a, b)
        np.testing.assert_array_equal(out, ufunc(a, b))
        assert out.shape == a.shape and out.dtype == a.dtype
    # Broadcasting and strided inputs are left to the ufunc itself.
    np.testing.assert_array_equal(parallel.binary(np.add, a, b[0]), a + b[0])
    np.testing.assert_array_equal(parallel.binary(np.add, a.T, b.T), a.T + b.T)


def test_gelu_backward_on_two_threads_gradchecks(two_threads_small_threshold):
    x = np.random.default_rng(4).standard_normal((4, 9))
    assert gradcheck(F.gelu, x)


def test_layer_norm_of_rows_with_a_large_mean():
    # The variance is taken around the mean ((x - mean) . (x - mean)), not as E[x^2] - mean^2,
    # so rows far from zero keep their precision even in float32.
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 16)) + 1000.0).astype(np.float32)
    gamma, beta = np.ones(16, np.float32), np.zeros(16, np.float32)
    out = F.layer_norm(ag.tensor(x), ag.tensor(gamma), ag.tensor(beta)).data
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, want, atol=2e-3)
    assert gradcheck(F.layer_norm, x.astype(np.float64) - 1000.0 + rng.standard_normal(16),
                     gamma.astype(np.float64) + 0.5, beta.astype(np.float64))


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 5), (7, 1), (33, 12)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outer_into_writes_the_outer_product(rows, cols, dtype):
    """backend.outer_into (a matrix product with an inner dimension of 2) is u v^T exactly."""
    from autograd.backend import outer_into

    rng = np.random.default_rng(rows + cols)
    u, v = rng.standard_normal(rows).astype(dtype), rng.standard_normal(cols).astype(dtype)
    out = np.full((rows, cols), np.nan, dtype=dtype)
    outer_into(u, v, out)
    np.testing.assert_array_equal(out, np.outer(u, v))


def test_dropout_of_a_strided_view_scales_the_kept_elements():
    """The residual dropout works in flat blocks: a transposed input must still give
    x * keep / (1 - p), its gradient g * keep / (1 - p)."""
    from autograd.ops.nn import Dropout

    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 4))
    x = base.T  # a strided view
    keep = rng.random((4, 6)) > 0.3
    xt = ag.tensor(x, requires_grad=True)
    out = Dropout.apply(xt, keep=keep, p=0.3)
    np.testing.assert_allclose(out.data, x * keep / 0.7, rtol=1e-12)
    g = rng.standard_normal((4, 6))
    out.backward(g)
    np.testing.assert_allclose(xt.grad, g * keep / 0.7, rtol=1e-12)
