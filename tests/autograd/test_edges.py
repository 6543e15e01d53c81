"""Edge cases of single ops and of the Tensor API (issue 11, items 19 and 21)."""

import numpy as np
import pytest

import autograd as ag
from autograd import nn
from autograd.testing import gradcheck

rng = np.random.default_rng(0)


def f32(values, requires_grad=True):
    return ag.tensor(np.asarray(values, dtype=np.float32), requires_grad=requires_grad)


# ---- NumPy scalars are plain numbers (item 19) ----------------------------------------------
@pytest.mark.parametrize("exponent", [np.float64(2.5), np.float64(2), np.int64(2), np.float32(3)])
def test_numpy_scalar_exponents_keep_float32_forward_and_backward(exponent):
    x = f32([1.5, 2.0, 0.5])
    y = x ** exponent
    assert y.dtype == np.float32
    y.backward(np.ones(3, dtype=np.float32))
    assert x.grad.dtype == np.float32
    e = float(exponent)
    np.testing.assert_allclose(x.grad, e * np.array([1.5, 2.0, 0.5]) ** (e - 1), rtol=1e-6)


def test_numpy_scalar_operands_and_clip_bounds_keep_float32():
    x = f32([-1.0, 0.2, 3.0])
    for y in (x * np.float64(2.0), np.float64(2.0) - x, x / np.int64(2), x.maximum(np.float64(0)),
              x.clip(np.float64(-0.5), np.float64(1.0)), x.clip(None, np.float64(1.0))):
        assert y.dtype == np.float32
        y.backward(np.ones(3, dtype=np.float32))
        assert x.grad.dtype == np.float32
        x.grad = None


def test_numpy_scalar_params_of_fused_ops_keep_float32():
    logits = f32(rng.standard_normal((4, 5)))
    loss = ag.functional.cross_entropy(logits, np.array([0, 1, 2, 3]),
                                       label_smoothing=np.float64(0.1))
    assert loss.dtype == np.float32
    loss.backward()
    assert logits.grad.dtype == np.float32


def test_clip_with_no_bound_is_the_identity():
    x = ag.tensor(rng.standard_normal(4), requires_grad=True)
    y = x.clip(None, None)  # NumPy 1.x's np.clip refuses this
    np.testing.assert_array_equal(y.data, x.data)
    y.backward(np.arange(4.0))
    np.testing.assert_array_equal(x.grad, np.arange(4.0))


# ---- pow at its edges (item 21) -----------------------------------------------------------------
def test_x_to_the_zero_is_one_with_zero_slope_everywhere():
    x = ag.tensor(np.array([0.0, -2.0, np.inf, -np.inf, np.nan]), requires_grad=True)
    y = x**0
    np.testing.assert_array_equal(y.data, np.ones(5))
    y.backward(np.ones(5))
    np.testing.assert_array_equal(x.grad, np.zeros(5))


def test_tensor_power_takes_the_limits_at_zero():
    a = ag.tensor(np.array([0.0, 0.0, 2.0]), requires_grad=True)
    b = ag.tensor(np.array([0.0, 1.5, 0.0]), requires_grad=True)
    with np.errstate(all="raise"):  # no warning escapes either
        (a**b).backward(np.ones(3))
    # d(a^b)/da: 0 where b = 0; 1.5 * 0^0.5 = 0 at a = 0, b = 1.5
    np.testing.assert_array_equal(a.grad, [0.0, 0.0, 0.0])
    # d(a^b)/db: 0 where a = 0 (PyTorch's choice); log(2) * 2^0 at a = 2, b = 0
    np.testing.assert_allclose(b.grad, [0.0, 0.0, np.log(2.0)])


def test_tensor_power_away_from_the_edges_still_gradchecks():
    gradcheck(lambda a, b: a**b, rng.uniform(0.3, 2.0, (3, 2)), rng.uniform(-1.0, 2.0, (3, 2)))


# ---- sigmoid and silu in the stable form ------------------------------------------------------
def test_sigmoid_and_silu_keep_tiny_values_in_float32():
    x = f32([-20.0, -90.0, 0.0, 20.0, 90.0])
    s = x.sigmoid()
    assert s.dtype == np.float32
    np.testing.assert_allclose(s.data[0], 2.0611537e-09, rtol=1e-6)  # was exactly 0
    assert s.data[1] > 0 and np.isfinite(s.data).all()
    np.testing.assert_allclose(s.data[2:], [0.5, 1.0, 1.0], rtol=1e-7)
    np.testing.assert_allclose(x.silu().data[0], -20 * 2.0611537e-09, rtol=1e-6)
    reference = 1 / (1 + np.exp(-np.array([-20.0, 0.0, 20.0])))
    np.testing.assert_allclose(ag.tensor(np.array([-20.0, 0.0, 20.0])).sigmoid().data, reference,
                               rtol=1e-15)


def test_swiglu_uses_the_same_stable_sigmoid():
    x = f32(np.full((1, 1), 1.0))
    wg, wu = f32([[-20.0]]), f32([[1.0]])
    np.testing.assert_allclose(ag.functional.swiglu(x, wg, wu).data, [[-20 * 2.0611537e-09]],
                               rtol=1e-6)


# ---- reductions ------------------------------------------------------------------------------
def test_any_integer_type_is_an_axis():
    x = ag.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    y = x.sum(axis=np.int64(1)) + x.mean(axis=(np.int32(0), 1)) + x.max(axis=np.int64(-1))
    assert y.shape == (2,)
    with pytest.raises(TypeError):
        x.sum(axis=1.0)


def test_a_0d_tensor_reduces_over_axis_0_and_minus_1_as_pytorch():
    x = ag.tensor(np.array(3.0), requires_grad=True)
    for axis in (0, -1, (0,)):
        y = x.sum(axis=axis) + x.mean(axis=axis) + x.max(axis=axis)
        assert y.shape == ()
        assert y.item() == 9.0
    with pytest.raises(ValueError, match="out of range"):
        x.sum(axis=1)
    y.backward()
    assert x.grad.item() == 3.0


def test_var_with_no_degrees_of_freedom_is_a_clear_error():
    x = ag.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"var: ddof=3 leaves no degrees of freedom for 3"):
        x.var(axis=1, ddof=3)
    x.var(axis=1, ddof=2).sum().backward()  # one degree of freedom left: fine


# ---- the Tensor API ------------------------------------------------------------------------
def test_bool_of_a_single_element_tensor():
    assert bool(ag.tensor(2.0)) and not bool(ag.tensor(0.0))
    assert bool(ag.tensor([[1.0]]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(ag.tensor([1.0, 2.0]))


def test_requires_grad_false_on_a_non_leaf_is_refused():
    x = ag.tensor(np.ones(2), requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match="only leaves"):
        y.requires_grad_(False)
    x.detach().requires_grad_(False)
    x.requires_grad_(False)  # a leaf may
    assert not x.requires_grad


def test_embedding_and_getitem_do_not_keep_the_callers_index():
    table = ag.tensor(rng.standard_normal((5, 2)), requires_grad=True)
    ids = np.array([0, 1, 1])
    out = ag.functional.embedding(ids, table)
    ids[:] = 4  # the caller reuses the buffer before the backward
    out.backward(np.ones((3, 2)))
    np.testing.assert_array_equal(table.grad[:, 0], [1, 2, 0, 0, 0])

    x = ag.tensor(rng.standard_normal(5), requires_grad=True)
    index = np.array([0, 0, 3])
    y = x[index]
    index[:] = 1
    y.backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, [2, 0, 0, 1, 0])


def test_a_linear_layer_given_float64_input_names_the_mismatch():
    with pytest.raises(TypeError, match="different float dtypes"):
        nn.Linear(2, 2)(ag.tensor(rng.standard_normal((3, 2)))).sum().backward()


def test_0d_float32_tensors_stay_float32_on_numpy_1_and_2():
    """NumPy 1.x computes a 0-d float32 array with a Python float in float64 (0-d arrays count
    as scalars there); NumPy 2 keeps float32. The engine gives float32 on both."""
    fns = [lambda t: t.tanh(), lambda t: t.sigmoid(), lambda t: t * 2.0, lambda t: 1.0 - t,
           lambda t: t.mean(), lambda t: t ** 2.5, lambda t: t.maximum(f32(0.1)),
           lambda t: t.logsumexp(axis=None), lambda t: t.silu(), lambda t: t / 3]
    for fn in fns:
        x = f32(0.7)
        y = fn(x)
        assert y.dtype == np.float32
        y.backward()
        assert x.grad.dtype == np.float32
