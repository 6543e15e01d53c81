"""The checker checks itself: deliberately broken backwards must each be caught by gradcheck
(and the invariant checker must catch broken bookkeeping)."""

import numpy as np
import pytest

import autograd as ag
from autograd import Function
from autograd import functional as F
from autograd.backend import get_array_module
from autograd.testing import GradcheckError, InvariantError, check_invariants, gradcheck

rng = np.random.default_rng(0)


class ZeroGradMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        return g * 0, g * 0


class WrongSignSub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, g  # should be g, -g


class UntransposedMatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return g @ b, a @ g  # should be g @ b.T, a.T @ g (shapes agree for square matrices)


class SoftmaxWithoutSumTerm(Function):
    @staticmethod
    def forward(ctx, x):
        e = np.exp(x - x.max(-1, keepdims=True))
        y = e / e.sum(-1, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * y  # missing: - y * sum(g * y)


class EmbeddingPlusEquals(Function):
    @staticmethod
    def forward(ctx, ids, table):
        ctx.save_for_backward(ids)
        ctx.shape = table.shape
        return table[ids]

    @staticmethod
    def backward(ctx, g):
        (ids,) = ctx.saved
        grad = np.zeros(ctx.shape)
        grad[ids] += g  # buffered: a repeated id keeps only one of its gradients
        return None, grad


class LayerNormWithoutMeanTerms(Function):
    @staticmethod
    def forward(ctx, x):
        rstd = 1 / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        ctx.save_for_backward(rstd)
        return (x - x.mean(-1, keepdims=True)) * rstd

    @staticmethod
    def backward(ctx, g):
        (rstd,) = ctx.saved
        return g * rstd  # missing: - mean(g) - xhat * mean(g * xhat)


def test_zero_grad_is_caught():
    with pytest.raises(GradcheckError, match="zerogradmul"):
        gradcheck(ZeroGradMul.apply, rng.standard_normal(3), rng.standard_normal(3))


def test_wrong_sign_is_caught():
    with pytest.raises(GradcheckError) as err:
        gradcheck(WrongSignSub.apply, rng.standard_normal(3), rng.standard_normal(3))
    assert err.value.input_index == 1  # input 0's gradient is right; input 1's sign is wrong


def test_transposed_matmul_grad_is_caught():
    with pytest.raises(GradcheckError, match="untransposedmatmul"):
        gradcheck(UntransposedMatMul.apply, rng.standard_normal((3, 3)), rng.standard_normal((3, 3)))


def test_softmax_without_its_sum_term_is_caught():
    # A cotangent of all ones would hide this bug (sum(softmax) is constant); gradcheck's is random.
    with pytest.raises(GradcheckError, match="softmaxwithoutsumterm"):
        gradcheck(SoftmaxWithoutSumTerm.apply, rng.standard_normal((2, 4)))


def test_embedding_plus_equals_on_repeated_ids_is_caught():
    ids = np.array([0, 2, 2, 1, 2])
    with pytest.raises(GradcheckError, match="embeddingplusequals"):
        gradcheck(lambda t: EmbeddingPlusEquals.apply(ids, t), rng.standard_normal((3, 2)))
    gradcheck(lambda t: F.embedding(ids, t), rng.standard_normal((3, 2)))  # the real one passes


def test_layernorm_without_its_mean_terms_is_caught():
    with pytest.raises(GradcheckError, match="layernormwithoutmeanterms"):
        gradcheck(LayerNormWithoutMeanTerms.apply, rng.standard_normal((2, 5)))


def test_missing_unbroadcast_is_caught(monkeypatch):
    """An engine that keeps one copy of a broadcast gradient instead of summing the copies."""
    import autograd.engine as engine

    def first_copy(grad, shape, *args):
        extra = grad.ndim - len(shape)
        g = grad[(0,) * extra] if extra else grad
        index = tuple(slice(0, 1) if n == 1 else slice(None) for n in shape)
        return g[index]

    monkeypatch.setattr(engine, "unbroadcast", first_copy)
    with pytest.raises(GradcheckError, match="add"):
        gradcheck(lambda a, b: a + b, rng.standard_normal((3, 4)), rng.standard_normal((1, 4)))


def test_error_names_op_input_element_values_and_seed():
    with pytest.raises(GradcheckError) as err:
        gradcheck(WrongSignSub.apply, rng.standard_normal(3), rng.standard_normal(3), seed=7)
    e = err.value
    assert e.op == "wrongsignsub" and e.input_index == 1 and e.seed == 7
    assert e.index == (0,) and np.isclose(e.analytic, -e.numeric)
    assert "seed 7" in str(e) and "input 1" in str(e)


def test_large_inputs_use_random_directions_and_still_find_the_element():
    """Above full_check_size the checker projects on random directions, then searches."""
    with pytest.raises(GradcheckError) as err:
        gradcheck(SoftmaxWithoutSumTerm.apply, rng.standard_normal((10, 10)), full_check_size=4)
    assert err.value.index is not None


def test_culprit_is_named_inside_a_composite():
    def composite(x):
        return (SoftmaxWithoutSumTerm.apply(x.tanh() * 2) + 1).log()

    with pytest.raises(GradcheckError) as err:
        gradcheck(composite, rng.standard_normal((2, 3)))
    assert err.value.op == "softmaxwithoutsumterm"


def test_correct_ops_pass_and_return_true():
    assert gradcheck(lambda a, b: (a * b).tanh().sum(axis=0), rng.standard_normal((3, 2)),
                     rng.standard_normal((3, 2)))
    assert not gradcheck(ZeroGradMul.apply, rng.standard_normal(2), rng.standard_normal(2),
                         raise_exception=False)


class MutatesInput(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * 2

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        a *= 0  # mutates the saved input
        return g * 2


class StatefulGrad(Function):
    calls = 0

    @staticmethod
    def forward(ctx, a):
        return a * 1

    @staticmethod
    def backward(ctx, g):
        StatefulGrad.calls += 1
        return g * StatefulGrad.calls  # a different gradient each time


def test_invariants_catch_mutation():
    with pytest.raises(InvariantError, match="mutated"):
        check_invariants(MutatesInput.apply, rng.standard_normal(3))


def test_invariants_catch_inexact_accumulation():
    with pytest.raises(InvariantError, match="second backward"):
        check_invariants(StatefulGrad.apply, rng.standard_normal(3))


def test_invariants_hold_for_shared_gradients():
    """add hands the same array to both inputs; the engine must not let two .grads share it."""
    assert check_invariants(lambda a, b: a + b, rng.standard_normal(3), rng.standard_normal(3))
    x = ag.tensor(rng.standard_normal(3), requires_grad=True)
    y = ag.tensor(rng.standard_normal(3), requires_grad=True)
    (x + y).backward(np.ones(3))
    assert not np.shares_memory(x.grad, y.grad)
    assert get_array_module(x.grad) is np
