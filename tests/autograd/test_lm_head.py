"""The fused LM head + cross-entropy (autograd/ops/lm_head.py) against `linear` followed by
`cross_entropy`, in float64 with a random upstream gradient: values and both gradients, with
ignored targets, label smoothing, several chunk sizes and a tied weight used twice."""

import numpy as np
import pytest

import autograd as ag
from autograd import functional as F
from autograd.testing import gradcheck

rng = np.random.default_rng(0)


def _inputs(B=2, T=5, C=4, V=7):
    x = rng.standard_normal((B, T, C))
    w = rng.standard_normal((V, C))
    targets = rng.integers(0, V, (B, T))
    targets[0, 1] = targets[1, -1] = targets[1, -2] = -100
    return x, w, targets


def _loss_and_grads(loss_fn, x, w, cotangent):
    xt, wt = ag.tensor(x, requires_grad=True), ag.tensor(w, requires_grad=True)
    loss = loss_fn(xt, wt)
    (loss * cotangent).backward()  # a random upstream gradient, not 1
    return loss.data, xt.grad, wt.grad


@pytest.mark.parametrize("chunk_rows", [None, 1, 3, 64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_matches_linear_then_cross_entropy(chunk_rows, smoothing):
    x, w, targets = _inputs()
    cot = rng.standard_normal()
    fused = _loss_and_grads(lambda a, b: F.lm_head_cross_entropy(
        a, b, targets, label_smoothing=smoothing, chunk_rows=chunk_rows), x, w, cot)
    composed = _loss_and_grads(lambda a, b: F.cross_entropy(
        F.linear(a, b.T), targets, label_smoothing=smoothing), x, w, cot)
    for f, c in zip(fused, composed):
        np.testing.assert_allclose(f, c, rtol=1e-10, atol=1e-13)


def test_gradcheck_with_tied_weight_and_ignored_targets():
    x, w, targets = _inputs(B=2, T=3, C=3, V=5)
    ids = np.array([[0, 4, 4], [2, 1, 0]])

    def gpt_tail(h, table):  # the weight is both the embedding and the output layer
        return F.lm_head_cross_entropy(h + F.embedding(ids, table), table, targets, chunk_rows=2)

    assert gradcheck(gpt_tail, x, w)


def test_only_the_needed_gradient_is_made_and_no_grad_makes_none():
    x, w, targets = _inputs()
    xt, wt = ag.tensor(x, requires_grad=True), ag.tensor(w)
    F.lm_head_cross_entropy(xt, wt, targets).backward()
    assert xt.grad is not None and wt.grad is None
    with ag.no_grad():
        loss = F.lm_head_cross_entropy(ag.tensor(x, requires_grad=True), w, targets)
    assert not loss.requires_grad
    expected = F.cross_entropy(F.linear(x, w.T), targets).data
    np.testing.assert_allclose(loss.data, expected, rtol=1e-12)


def test_all_targets_ignored_gives_zero_loss_and_gradient():
    x, w, _ = _inputs()
    xt, wt = ag.tensor(x, requires_grad=True), ag.tensor(w, requires_grad=True)
    loss = F.lm_head_cross_entropy(xt, wt, np.full((2, 5), -100))
    loss.backward()
    assert loss.item() == 0.0 and not xt.grad.any() and not wt.grad.any()


def test_float32_stays_float32_and_bad_input_is_explained():
    x, w, targets = _inputs()
    xt = ag.tensor(x.astype(np.float32), requires_grad=True)
    wt = ag.tensor(w.astype(np.float32), requires_grad=True)
    loss = F.lm_head_cross_entropy(xt, wt, targets)
    loss.backward()
    assert loss.dtype == xt.grad.dtype == wt.grad.dtype == np.float32
    with pytest.raises(IndexError, match=r"targets \(other than -100\) must be in \[0, 7\)"):
        F.lm_head_cross_entropy(x, w, np.full((2, 5), 7))
    with pytest.raises(ValueError, match="expects 4"):
        F.lm_head_cross_entropy(x[..., :3], w, targets)
    with pytest.raises(ValueError, match="don't match"):
        F.lm_head_cross_entropy(x, w, targets[:, :4])



@pytest.mark.parametrize("threads", [1, 2])
def test_rows_in_small_blocks_on_the_pool_match_the_composed_ops(threads, monkeypatch):
    """Each chunk's softmax, loss and gradient go in cache-sized blocks of rows, which the pool
    may run on two threads: shrunk to 2 rows a block (ragged), the same values and gradients."""
    from autograd import backend, parallel

    monkeypatch.setattr(backend, "BLOCK_ELEMENTS", 15)  # V = 7: 2 rows a block
    x, w, targets = _inputs(B=3, T=5)
    cot = rng.standard_normal()
    before = parallel.num_threads()
    parallel.set_num_threads(threads)
    try:
        fused = _loss_and_grads(lambda a, b: F.lm_head_cross_entropy(
            a, b, targets, label_smoothing=0.1, chunk_rows=7), x, w, cot)
    finally:
        parallel.set_num_threads(before)
    composed = _loss_and_grads(lambda a, b: F.cross_entropy(
        F.linear(a, b.T), targets, label_smoothing=0.1), x, w, cot)
    for f, c in zip(fused, composed):
        np.testing.assert_allclose(f, c, rtol=1e-10, atol=1e-13)
