"""autograd.nn.shards: a batch cut into parts whose forward and backward run on threads at once
must give the gradient of the whole batch, leave the model's arrays shared (never copied), and
be the same on every run."""

import sys
import threading

import numpy as np
import pytest

import autograd as ag
from autograd import nn
from autograd.function import _locks, _unwatch, _watch
from autograd.nn.shards import ThreadShards, replicate


class TinyNet(nn.Module):
    """Two linear layers with a layer norm, dropout and a weight used twice (tied)."""

    def __init__(self, rng, p=0.0):
        super().__init__()
        self.rng = rng
        self.a = nn.Linear(6, 8, dtype="float64", rng=rng)
        self.norm = nn.LayerNorm(8, dtype="float64")
        self.drop = nn.Dropout(p, rng=rng)
        self.b = nn.Linear(8, 8, dtype="float64", rng=rng)
        self.b_again = self.b  # the same module (and weights) reached twice

    def forward(self, x):
        h = self.drop(ag.functional.gelu(self.norm(self.a(x))))
        return self.b_again(self.b(h).tanh())


def loss_of(cotangent):
    """A scalar loss <f(x), c> with a random cotangent c (never all ones)."""
    def fn(model, part):
        x, c, weight = part
        return (model(ag.Tensor(x)) * ag.Tensor(c)).sum() * weight
    return fn


def batch(rows=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 6)), rng.standard_normal((rows, 8))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_sharded_gradients_equal_the_whole_batch(n):
    model = TinyNet(np.random.default_rng(0))
    x, c = batch()
    loss_of(c)(model, (x, c, 1.0)).backward()
    whole = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.zero_grad()
    shards = ThreadShards(model, n, rng=model.rng)
    parts = [(xp, cp, 1.0) for xp, cp in zip(np.array_split(x, n), np.array_split(c, n))]
    losses = shards.run(loss_of(c), parts)
    shards.close()
    assert len(losses) == n
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, whole[name], rtol=1e-12, atol=1e-12, err_msg=name)
    for twin in shards.twins:  # handed over: nothing left behind to be added twice
        assert all(q.grad is None for q in twin.parameters())


def test_twins_share_the_arrays_and_follow_the_model():
    model = TinyNet(np.random.default_rng(0))
    shards = ThreadShards(model, 2, rng=model.rng)
    twin = shards.twins[0]
    for (name, p), (twin_name, q) in zip(model.named_parameters(), twin.named_parameters()):
        assert name == twin_name and q is not p and q.data is p.data
    assert twin.b is twin.b_again  # tied weights stay tied
    assert twin.drop.rng is shards.rngs[0] and twin.rng is shards.rngs[0]
    assert model.drop.rng is model.rng  # the model keeps its own generator
    # A replaced array, a frozen weight and eval mode reach the twin at the next run.
    model.a.weight.data = model.a.weight.data.copy()
    model.a.bias.requires_grad = False
    model.eval()
    x, c = batch(4)
    shards.run(loss_of(c), [(x[:2], c[:2], 1.0), (x[2:], c[2:], 1.0)])
    assert twin.a.weight.data is model.a.weight.data
    assert not twin.drop.training
    assert model.a.bias.grad is None and twin.a.bias.grad is None


def test_the_same_seeds_give_the_same_gradients_and_other_seeds_other_masks():
    def run(seeds):
        model = TinyNet(np.random.default_rng(0), p=0.5)
        shards = ThreadShards(model, 2, rng=model.rng)
        shards.seed(seeds)
        x, c = batch()
        shards.run(loss_of(c), [(x[:3], c[:3], 1.0), (x[3:], c[3:], 1.0)])
        return np.concatenate([p.grad.ravel() for p in model.parameters()])

    first, again, other = run([7]), run([7]), run([8])
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_an_error_in_one_part_is_raised_after_all_parts_finish():
    model = TinyNet(np.random.default_rng(0))
    shards = ThreadShards(model, 2, rng=model.rng)
    x, c = batch(4)

    def fails_on_the_twin(module, part):
        if module is not model:
            raise ValueError("part 1 is broken")
        return loss_of(c)(module, part)

    with pytest.raises(ValueError, match="part 1 is broken"):
        shards.run(fails_on_the_twin, [(x[:2], c[:2], 1.0), (x[2:], c[2:], 1.0)])
    assert all(q.grad is None for q in shards.twins[0].parameters())
    with pytest.raises(ValueError, match="2 parts for 3 shards"):
        ThreadShards(model, 3).run(loss_of(c), [(x, c, 1.0)] * 2)
    with pytest.raises(ValueError, match="positive int"):
        ThreadShards(model, 0)


def test_forward_only_runs_score_without_gradients():
    model = TinyNet(np.random.default_rng(0))
    x, c = batch()
    with ag.no_grad():  # the mode reaches the worker threads
        losses = ThreadShards(model, 2).run(loss_of(c), [(x[:3], c[:3], 1.0),
                                                         (x[3:], c[3:], 1.0)], backward=False)
    assert sum(losses) == pytest.approx(float(loss_of(c)(model, (x, c, 1.0)).data))
    assert all(p.grad is None for p in model.parameters())


def test_replicate_swaps_only_what_it_is_told():
    rng, other = np.random.default_rng(0), np.random.default_rng(1)
    model = TinyNet(rng)
    twin = replicate(model, {id(rng): other})
    assert twin.rng is other and twin.drop.rng is other
    assert twin.a.weight.data is model.a.weight.data and twin.a is not model.a
    assert replicate(model).rng is rng


def test_watching_one_array_from_many_threads_keeps_count():
    """Graphs built at once on several threads watch the same weights (the saved-array guard):
    the watch count must not lose an update, or the weight would stay read-only (or unlock
    while a graph still needs it)."""
    arr = np.zeros(3)
    start = threading.Barrier(4)

    def churn():
        start.wait()
        for _ in range(10000):
            _watch(arr)
            _unwatch(arr)
        _watch(arr)

    # A thread switch every microsecond: without the lock, threads are often interrupted
    # between reading a count and writing it back, and the final count comes out wrong.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=churn) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(before)
    assert _locks[id(arr)][1] == 4 and not arr.flags.writeable
    for _ in range(4):
        _unwatch(arr)
    assert id(arr) not in _locks and arr.flags.writeable
