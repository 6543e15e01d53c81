"""Sampling: the KV cache gives what full recomputation gives, filtering properties, streaming."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import autograd as ag
from tinyllm import GPT, GPTConfig
from tinyllm.generate import filter_top_k, filter_top_p, sample_next


def reference_generate(model, idx, n, **sampling):
    """No cache: run the model on the last block_size tokens at every step."""
    rng = np.random.default_rng(sampling.pop("seed"))
    out = idx
    with ag.no_grad():
        for _ in range(n):
            logits, _ = model(out[:, -model.config.block_size:])
            nxt = sample_next(logits.data[:, -1, :], rng, **sampling)
            out = np.concatenate([out, nxt[:, None]], axis=1)
    return out


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.0, top_k=5),
                                      dict(temperature=0.9, top_p=0.8)])
def test_kv_cache_generation_equals_full_recomputation(pos, sampling):
    """Past the block size too (the window slides), and for a batch of prompts."""
    model = GPT(GPTConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=16, pos=pos,
                          dtype="float64"), seed=3)
    for p in model.parameters():  # sharper distributions than the init's near-uniform ones
        p.data *= 8.0 if p.ndim == 2 else 1.0
    idx = np.random.default_rng(0).integers(0, 23, (2, 3))
    fast = model.generate(idx, 14, seed=7, **sampling)
    slow = reference_generate(model, idx, 14, seed=7, **sampling)
    np.testing.assert_array_equal(fast, slow)


def test_cached_logits_match_full_forward():
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=8,
                          dtype="float64"))
    idx = np.random.default_rng(1).integers(0, 13, (1, 10))
    with ag.no_grad():
        full, _ = model(idx)
        cache = [{} for _ in range(2)]
        first, _ = model(idx[:, :6], cache=cache)
        steps = [model(idx[:, t:t + 1], cache=cache, start_pos=t)[0] for t in range(6, 10)]
    np.testing.assert_allclose(first.data, full.data[:, :6], rtol=1e-10, atol=1e-12)
    for t, logits in zip(range(6, 10), steps):
        np.testing.assert_allclose(logits.data[:, 0], full.data[:, t], rtol=1e-10, atol=1e-12)


logit_rows = hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 12)),
                        elements=st.floats(-20, 20))


@given(logits=logit_rows, k=st.integers(1, 15))
def test_top_k_keeps_the_k_largest(logits, k):
    kept = np.isfinite(filter_top_k(logits, k))
    for row, keep in zip(logits, kept):
        assert keep.sum() >= min(k, row.size)  # ties at the boundary are kept
        if keep.sum() < row.size:
            assert row[keep].min() >= row[~keep].max()


@given(logits=logit_rows, p=st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_nucleus(logits, p):
    filtered = filter_top_p(logits, p)
    for row, out in zip(logits, filtered):
        keep = np.isfinite(out)
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        assert keep[np.argmax(row)]  # the most likely token always survives
        assert probs[keep].sum() >= min(p, 1.0) - 1e-9
        if keep.sum() > 1:  # dropping the least likely kept token would fall below p
            smallest = probs[keep].min()
            assert probs[keep].sum() - smallest < p + 1e-9
        if keep.sum() < row.size:
            assert row[keep].min() >= row[~keep].max()


def test_greedy_is_argmax_and_seeded_sampling_repeats():
    logits = np.array([[0.1, 3.0, -1.0], [2.0, 0.0, 1.9]])
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(sample_next(logits, rng, temperature=0), [1, 0])
    np.testing.assert_array_equal(sample_next(logits, rng, top_k=1), [1, 0])
    a = [sample_next(logits, np.random.default_rng(5)) for _ in range(3)]
    assert all((x == a[0]).all() for x in a)


def test_stream_yields_as_it_goes_and_stops_on_a_stop_token():
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=4))
    idx = np.array([[1, 2]])
    greedy = model.generate(idx, 6, temperature=0)
    columns = list(model.stream(idx, 6, temperature=0))
    assert len(columns) == 6 and [int(c[0]) for c in columns] == greedy[0, 2:].tolist()
    stop = int(greedy[0, 2])
    assert len(list(model.stream(idx, 6, temperature=0, stop_tokens=[stop]))) == 1


def test_generate_rejects_an_empty_prompt():
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=4))
    with pytest.raises(ValueError, match="at least one token"):
        model.generate(np.zeros((1, 0), dtype=np.int64), 3)
