"""Sampling from a GPT with a KV cache.

The first step runs the whole prompt once and keeps every layer's keys and values; each later
step runs one new position against the cache, so a token costs one position, not the whole
context. Once the context is longer than `block_size`, the window slides: every position shifts,
which invalidates the cached keys (learned positions are absolute), so each step then runs the
last `block_size` tokens afresh. Either way the result is exactly what running the model on the
last `block_size` tokens at every step gives (tests/tinyllm/test_generate.py checks this).
"""

from __future__ import annotations

import numpy as np

import autograd as ag
from autograd.backend import asnumpy


def filter_top_k(logits, k):
    """Keep the k largest logits of each row (ties at the boundary kept), set the rest to -inf."""
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    kth = np.partition(logits, -k, axis=-1)[..., -k, None]
    return np.where(logits < kth, -np.inf, logits)


def filter_top_p(logits, p):
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches
    p (always at least the most likely one), set the rest to -inf."""
    if p is None or p >= 1.0:
        return logits
    if not 0.0 < p:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    order = np.argsort(-logits, axis=-1, kind="stable")
    sorted_logits = np.take_along_axis(logits, order, axis=-1)
    probs = np.exp(sorted_logits - sorted_logits[..., :1])
    probs /= probs.sum(axis=-1, keepdims=True)
    before = np.cumsum(probs, axis=-1) - probs  # probability mass strictly before each token
    drop_sorted = before >= p
    drop = np.empty_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)
    return np.where(drop, -np.inf, logits)


def sample_next(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """One token id per row of `logits` (B, V), as float64 on the host."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0 or top_k == 1:
        return logits.argmax(axis=-1)
    logits = filter_top_p(filter_top_k(logits / temperature, top_k), top_p)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    u = rng.random((logits.shape[0], 1))
    return np.minimum((probs.cumsum(axis=-1) < u).sum(axis=-1), logits.shape[-1] - 1)


def stream(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
           stop_tokens=None, seed=None):
    """Yield the next token of every row (an int array of shape (B,)) for up to
    `max_new_tokens` steps; stops early once every row has produced a stop token."""
    idx = np.asarray(idx.data if isinstance(idx, ag.Tensor) else idx)
    if idx.ndim == 1:
        idx = idx[None, :]
    if idx.shape[1] == 0:
        raise ValueError("generate needs a prompt of at least one token")
    rng = np.random.default_rng(seed)
    stops = set(stop_tokens or ())
    block = model.config.block_size
    was_training = model.training
    model.eval()
    try:
        with ag.no_grad():
            tokens = idx
            cache, cached = None, 0  # `cached` = how many positions the cache holds
            done = np.zeros(len(idx), dtype=bool)
            for _ in range(max_new_tokens):
                if cache is None or cached >= block:  # no room for one more position
                    window = tokens[:, -block:]
                    cache = [{} for _ in range(model.config.n_layer)]
                    logits, _ = model(window, cache=cache, start_pos=0, last_only=True)
                    cached = window.shape[1]
                else:
                    logits, _ = model(tokens[:, -1:], cache=cache, start_pos=cached,
                                      last_only=True)
                    cached += 1
                nxt = sample_next(asnumpy(logits.data[:, -1, :]), rng, temperature, top_k, top_p)
                tokens = np.concatenate([tokens, nxt[:, None].astype(tokens.dtype)], axis=1)
                yield nxt
                if stops:
                    done |= np.isin(nxt, list(stops))
                    if done.all():
                        return
    finally:
        model.train(was_training)


def generate(model, idx, max_new_tokens, **sampling):
    """The prompt followed by the sampled tokens, shape (B, T + new)."""
    idx = np.asarray(idx.data if isinstance(idx, ag.Tensor) else idx)
    squeeze = idx.ndim == 1
    idx2 = idx[None, :] if squeeze else idx
    new = [t[:, None] for t in stream(model, idx2, max_new_tokens, **sampling)]
    out = np.concatenate([idx2, *[n.astype(idx2.dtype) for n in new]], axis=1)
    return out[0] if squeeze else out
