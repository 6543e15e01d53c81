"""Sampling: the KV cache gives what full recomputation gives (and the rolling cache of RoPE
models what sliding-window attention gives), filtering properties, streaming, stopping."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import autograd as ag
import autograd.functional
from tinyllm import GPT, GPTConfig
from tinyllm.generate import PAD, filter_top_k, filter_top_p, generate, sample_next, trim


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


SAMPLINGS = [dict(temperature=0), dict(temperature=1.0, top_k=5), dict(temperature=0.9, top_p=0.8)]


def sharp_model(pos, n_layer=2, block_size=8):
    model = GPT(GPTConfig(vocab_size=23, block_size=block_size, n_layer=n_layer, n_head=2,
                          n_embd=16, pos=pos, dtype="float64"), seed=3)
    for p in model.parameters():  # sharper distributions than the init's near-uniform ones
        p.data *= 8.0 if p.ndim == 2 else 1.0
    return model


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_kv_cache_generation_equals_full_recomputation(pos, sampling):
    """Past the block size too (the window slides), and for a batch of prompts. For RoPE this
    is the `recompute` window; the default rolling cache is checked below."""
    model = sharp_model(pos)
    idx = np.random.default_rng(0).integers(0, 23, (2, 3))
    fast = generate(model, idx, 14, seed=7, window="recompute", **sampling)
    slow = reference_generate(model, idx, 14, seed=7, **sampling)
    np.testing.assert_array_equal(fast, slow)


def sliding_window_generate(model, idx, n, monkeypatch, **sampling):
    """The reference for the rolling cache: no cache, the whole sequence from position 0, with
    every layer's attention limited to the last block_size positions (a band mask)."""
    block = model.config.block_size
    plain = autograd.functional.scaled_dot_product_attention

    def banded(q, k, v, causal=True, mask=None, **kw):
        T, S = q.shape[-2], k.shape[-2]
        i, j = np.arange(T)[:, None] + (S - T), np.arange(S)[None, :]
        return plain(q, k, v, causal=causal, mask=(j <= i) & (j > i - block), **kw)

    with monkeypatch.context() as patch:
        patch.setattr(autograd.functional, "scaled_dot_product_attention", banded)
        return reference_generate_full(model, idx, n, **sampling)


def reference_generate_full(model, idx, n, **sampling):
    rng = np.random.default_rng(sampling.pop("seed"))
    out = idx
    with ag.no_grad():
        for _ in range(n):
            logits, _ = model(out)
            out = np.concatenate([out, sample_next(logits.data[:, -1], rng, **sampling)[:, None]],
                                 axis=1)
    return out


@pytest.mark.parametrize("n_layer", [1, 2])
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_rope_rolling_cache_equals_sliding_window_attention(n_layer, sampling, monkeypatch):
    """Three times the block of new tokens: positions count past block_size while the cache
    rolls. A prompt longer than the block is first cut to its last block_size tokens."""
    model = sharp_model("rope", n_layer)
    idx = np.random.default_rng(1).integers(0, 23, (2, 10))
    rolling = generate(model, idx, 24, seed=5, **sampling)  # window="auto": rolling for RoPE
    reference = sliding_window_generate(model, idx[:, -8:], 24, monkeypatch, seed=5, **sampling)
    np.testing.assert_array_equal(rolling[:, 2:], reference)


@pytest.mark.parametrize("n_layer", [1, 2])
def test_rolling_and_recomputed_windows_agree_for_one_layer_only(n_layer, monkeypatch):
    """With one layer, a cached key depends on its token and position alone, and RoPE scores
    depend on distances alone: sliding-window attention is the recomputed window, to rounding.
    From two layers on, a cached layer-2 key saw (through layer 1) tokens that have left the
    window, which a recompute cuts off: the logits differ. That is why RoPE models default to
    the (cheaper) rolling cache but `window="recompute"` stays available."""
    model = sharp_model("rope", n_layer)
    seq = np.random.default_rng(2).integers(0, 23, (1, 20))
    block = model.config.block_size
    plain = autograd.functional.scaled_dot_product_attention

    def banded(q, k, v, causal=True, mask=None, **kw):
        T, S = q.shape[-2], k.shape[-2]
        i, j = np.arange(T)[:, None] + (S - T), np.arange(S)[None, :]
        return plain(q, k, v, causal=causal, mask=(j <= i) & (j > i - block), **kw)

    with ag.no_grad():
        window = model(seq[:, -block:])[0].data[:, -1]
        with monkeypatch.context() as patch:
            patch.setattr(autograd.functional, "scaled_dot_product_attention", banded)
            sliding = model(seq)[0].data[:, -1]
    if n_layer == 1:
        np.testing.assert_allclose(sliding, window, rtol=1e-10, atol=1e-10)
    else:
        assert np.abs(sliding - window).max() > 1e-3


def test_a_rolling_cache_needs_rope():
    with pytest.raises(ValueError, match="rolling cache needs rotary"):
        generate(sharp_model("learned"), np.array([[1]]), 3, window="rolling")


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


def test_rows_that_stop_emit_padding_and_the_stream_ends_when_all_have_stopped():
    """Greedy, so each row's tokens before its stop are those of a run without stop tokens."""
    model = sharp_model("rope")
    idx = np.random.default_rng(4).integers(0, 23, (3, 2))
    free = generate(model, idx, 12, temperature=0)[:, 2:]
    stop = int(free[0, 1])  # row 0 stops at its second token
    first = [list(row).index(stop) if stop in row else None for row in free.tolist()]
    out = generate(model, idx, 12, temperature=0, stop_tokens=[stop])[:, 2:]
    ends = [12 if f is None else f + 1 for f in first]
    assert out.shape[1] == max(ends)
    for row, end in zip(range(3), ends):
        np.testing.assert_array_equal(out[row, :end], free[row, :end])
        assert (out[row, end:] == PAD).all()


def test_sampled_rows_stop_one_by_one():
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=4), seed=1)
    columns = list(model.stream(np.zeros((6, 1), dtype=np.int64), 200, temperature=1.0,
                                stop_tokens=[0], seed=3))
    out = np.stack(columns, axis=1)
    for row in out:
        stop_at = list(row).index(0)  # every row met the stop token (p ~ 1/5 a step)
        assert (row[stop_at + 1:] == PAD).all() and (row[:stop_at] > 0).all()
    assert (out[:, -1] == 0).sum() >= 1  # the last column is some row's stop token
    assert trim(out[0], stop_tokens=[0]) == out[0, :list(out[0]).index(0)].tolist()


def test_sample_command_does_not_print_the_end_of_text_token(monkeypatch, capsys):
    import tinyllm
    from tinyllm.cli import main
    from tinyllm.tokenizer import BPETokenizer

    tok = BPETokenizer.train("hello world, hello there. " * 20, 262,
                             special_tokens=["<|endoftext|>"])
    eot = tok.special_tokens["<|endoftext|>"]
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1,
                          n_embd=4))
    said = tok.encode(" there")
    columns = [np.array([t]) for t in [*said, eot, *tok.encode(" more")]]
    monkeypatch.setattr(model, "stream", lambda *a, **k: iter(columns))
    monkeypatch.setattr(tinyllm, "load", lambda run: (model, tok))
    assert main(["sample", "some-run", "--prompt", "hello"]) == 0
    assert capsys.readouterr().out == "hello there\n"
