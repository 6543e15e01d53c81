"""Branches the op property tests could not reach (issue 11, item 22): AdamW's blocked update,
exact ties for max/min, casts between float dtypes, and the engine on random graphs.
(GELU, LayerNorm and attention in small blocks, and every op in float32, are in test_ops.py.)"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd as ag
from autograd import backend, nn, optim
from autograd.testing import gradcheck
from tests.autograd.test_optim import adamw_reference


# ---- AdamW, block by block ---------------------------------------------------------------------
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_in_small_blocks_matches_the_formula(monkeypatch, amsgrad):
    """With 7-element blocks a (5, 6) weight is updated in 5 blocks, the last one short; a
    non-contiguous parameter takes the one-block path. Both must match the formula."""
    monkeypatch.setattr(backend, "BLOCK_ELEMENTS", 7)
    rng = np.random.default_rng(0)
    start = [rng.standard_normal((5, 6)), rng.standard_normal(9), rng.standard_normal((6, 5)).T]
    params = [nn.Parameter(a.copy()) for a in start]
    grads = [[rng.standard_normal(a.shape) for a in start] for _ in range(4)]
    opt = optim.AdamW(params, lr=0.1, weight_decay=0.2, amsgrad=amsgrad)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g
        opt.step()
    for i, (p, p0) in enumerate(zip(params, start)):
        expected, _, _ = adamw_reference(p0, [g[i] for g in grads], lr=0.1, betas=(0.9, 0.999),
                                         eps=1e-8, wd=0.2, amsgrad=amsgrad)
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-14)


# ---- exact ties ----------------------------------------------------------------------------------
def test_max_and_min_split_the_gradient_evenly_over_exact_ties():
    x = ag.tensor(np.array([[1.0, 3.0, 3.0, 2.0],
                            [5.0, 5.0, 5.0, 0.0]]), requires_grad=True)
    g = np.array([2.0, 6.0])
    x.max(axis=1).backward(g)
    np.testing.assert_array_equal(x.grad, [[0, 1, 1, 0], [2, 2, 2, 0]])
    x.grad = None
    x.min(axis=0, keepdims=True).backward(np.array([[4.0, 8.0, 2.0, 1.0]]))
    np.testing.assert_array_equal(x.grad, [[4, 8, 2, 0], [0, 0, 0, 1]])
    x.grad = None
    x.max().backward()  # three-way tie over the whole tensor
    np.testing.assert_array_equal(x.grad * 3, [[0, 0, 0, 0], [1, 1, 1, 0]])


def test_maximum_and_minimum_give_each_side_half_on_a_tie():
    a = ag.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = ag.tensor(np.array([1.0, 5.0, 0.0]), requires_grad=True)
    g = np.array([4.0, 4.0, 4.0])
    a.maximum(b).backward(g)
    np.testing.assert_array_equal(a.grad, [2, 0, 4])
    np.testing.assert_array_equal(b.grad, [2, 4, 0])
    a.grad = b.grad = None
    a.minimum(b).backward(g)
    np.testing.assert_array_equal(a.grad, [2, 4, 0])
    np.testing.assert_array_equal(b.grad, [2, 0, 4])
    c = ag.tensor(np.array([[1.0], [2.0]]), requires_grad=True)  # a tie after broadcasting
    c.maximum(ag.tensor(np.array([1.0, 2.0]))).backward(np.ones((2, 2)))
    np.testing.assert_array_equal(c.grad, [[0.5], [1.5]])


# ---- casts between float dtypes ------------------------------------------------------------
PAIRS = [(np.float32, np.float64), (np.float64, np.float32), (np.float32, np.float16),
         (np.float16, np.float64), (np.float64, np.float64)]


@pytest.mark.parametrize("src,dst", PAIRS, ids=lambda d: np.dtype(d).name)
def test_cast_between_float_dtypes_sends_the_gradient_back_in_the_source_dtype(src, dst):
    x = ag.tensor(np.array([0.5, -1.25, 3.0], dtype=src), requires_grad=True)
    y = ag.Function.registry["autograd.ops.elementwise.Cast"].apply(x, dtype=np.dtype(dst))
    assert y.dtype == dst
    np.testing.assert_array_equal(y.data, x.data.astype(dst))
    (y * ag.tensor(np.array([2.0, -1.0, 0.5], dtype=dst))).sum().backward()
    assert x.grad.dtype == src
    np.testing.assert_array_equal(x.grad, np.array([2.0, -1.0, 0.5], dtype=src))


def test_astype_round_trip_gradchecks_through_float32():
    # float64 -> float32 -> float64: the values are rounded, the slope is still 1 (to float32).
    x = np.random.default_rng(0).standard_normal(5)
    gradcheck(lambda t: (t.astype(np.float32).astype(np.float64) * 3.0).tanh(), x,
              eps=1e-3, atol=1e-5, rtol=1e-3)


# ---- the engine on random graphs -------------------------------------------------------------
UNARY = {
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "square": lambda a: a * a,
    "neg": lambda a: -a,
    "exp_tanh": lambda a: a.tanh().exp(),
    "sum_back": lambda a: a.sum(axis=-1, keepdims=True) + a,  # reduce, then broadcast back
    "flip": lambda a: a.T.reshape(a.shape) if a.ndim == 2 and a.shape[0] == a.shape[1] else a,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1.0 + b * b),
    "max": lambda a, b: a.maximum(b + 10.0),  # never a tie: b + 10 always wins
    "stack_sum": lambda a, b: ag.stack([a, b]).sum(axis=0),
}


@st.composite
def random_graphs(draw):
    """A recipe: 1-3 inputs, then 1-12 steps, each an op on earlier values (any earlier value,
    so values are reused and paths join), and the output is a weighted sum of several values."""
    n_inputs = draw(st.integers(1, 3))
    steps = []
    for i in range(draw(st.integers(1, 12))):
        available = n_inputs + i
        if draw(st.booleans()):
            steps.append((draw(st.sampled_from(sorted(UNARY))), draw(st.integers(0, available - 1))))
        else:
            steps.append((draw(st.sampled_from(sorted(BINARY))),
                          draw(st.integers(0, available - 1)), draw(st.integers(0, available - 1))))
    outputs = draw(st.lists(st.integers(0, n_inputs + len(steps) - 1), min_size=1, max_size=3))
    return n_inputs, steps, outputs


def run_recipe(recipe, *inputs):
    _, steps, outputs = recipe
    values = list(inputs)
    for op, *args in steps:
        fn = UNARY.get(op) or BINARY[op]
        values.append(fn(*(values[i] for i in args)))
    total = values[outputs[0]] * 1.0
    for k, i in enumerate(outputs[1:], start=2):
        total = total + values[i] * float(k)  # the same value may be summed twice
    return total


@given(recipe=random_graphs(), seed=st.integers(0, 2**16))
def test_random_graphs_match_finite_differences(recipe, seed):
    rng = np.random.default_rng(seed)
    inputs = [rng.uniform(-1.5, 1.5, (3, 3)) for _ in range(recipe[0])]
    gradcheck(lambda *ts: run_recipe(recipe, *ts), *inputs)
