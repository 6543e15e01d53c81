"""Sampling from a GPT with a KV cache.

The first step runs the whole prompt once and keeps every layer's keys and values; each later
step runs one new position against the cache, so a token costs one position, not the whole
context. What happens once the context is longer than `block_size` depends on the positions:

- learned positions (GPT-2) are absolute: when the window slides, every token moves to a new
  position, so every cached key is stale; each step runs the last `block_size` tokens afresh.
  The result is exactly what running the model on the last `block_size` tokens gives.
- rotary positions (RoPE) enter attention only through the distance between query and key, so
  the cache can roll: drop the oldest position, append the newest, keep counting positions up.
  Each step costs one position. This is *sliding-window attention*: at every layer, a token
  attends to the last `block_size` positions. It is not the same computation as recomputing the
  last `block_size` tokens from scratch once the model has two layers or more: a cached key of
  layer 2 was computed when its token could still see (through layer 1) tokens that have since
  left the window, while a fresh recompute cuts that context off. With one layer the two agree
  to rounding. `window="recompute"` gives the fresh-window result for RoPE models too.

tests/tinyllm/test_generate.py checks each mode against its own reference.
"""

from __future__ import annotations

import numpy as np

import autograd as ag
from autograd.backend import asnumpy
from tinyllm.validate import check_sampling

PAD = -1  # what a row that has stopped yields (no token); see `stream`


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


def _keep_last(cache, n):
    """Roll every layer's cache back to its last `n` positions (the oldest ones leave)."""
    for layer in cache:
        if n == 0:
            layer.clear()
            continue
        for name in ("k", "v"):
            length = layer[name].shape[2]
            layer[name] = layer[name][:, :, length - n:]


def _keep_rows(cache, rows):
    """Keep only the batch rows `rows` (host integer indices) of every layer's cache."""
    for layer in cache:
        for name in ("k", "v"):
            if name in layer:
                layer[name] = layer[name][rows]


def _window_mode(model, window):
    if window == "auto":
        return "rolling" if model.config.pos == "rope" else "recompute"
    if window not in ("rolling", "recompute"):
        raise ValueError(f"window must be 'auto', 'rolling' or 'recompute', got {window!r}")
    if window == "rolling" and model.config.pos != "rope":
        raise ValueError("a rolling cache needs rotary positions (pos='rope'): learned "
                         "positions are absolute, so a sliding window must be recomputed")
    return window


def stream(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
           stop_tokens=None, seed=None, pad_id=PAD, window="auto"):
    """Yield the next token of every row (an int array of shape (B,)) for up to
    `max_new_tokens` steps.

    A row that samples one of `stop_tokens` yields that token once and then `pad_id` (default
    -1, no token) at every later step; it is no longer computed, and the stream ends as soon as
    every row has stopped. `window` chooses what happens past `block_size` tokens: "rolling"
    (RoPE only, the default there) or "recompute" (the default for learned positions); see the
    module docstring."""
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    idx = np.asarray(idx.data if isinstance(idx, ag.Tensor) else idx)
    if idx.ndim == 1:
        idx = idx[None, :]
    if idx.shape[1] == 0:
        raise ValueError("generate needs a prompt of at least one token")
    rolling = _window_mode(model, window) == "rolling"
    rng = np.random.default_rng(seed)
    stops = np.asarray(sorted(set(stop_tokens or ())), dtype=np.int64)
    block = model.config.block_size
    was_training = model.training
    model.eval()
    try:
        with ag.no_grad():
            tokens = idx  # the rows still sampling, prompt and all
            rows = np.arange(len(idx))  # their places in the batch
            cache, cached, position = None, 0, 0  # `cached`: positions the cache holds
            for _ in range(max_new_tokens):
                if cache is None or (cached >= block and not rolling):
                    window_ids = tokens[:, -block:]
                    cache = [{} for _ in range(model.config.n_layer)]
                    logits, _ = model(window_ids, cache=cache, start_pos=0, last_only=True)
                    cached = position = window_ids.shape[1]
                else:
                    if cached >= block:  # rolling: make room by forgetting the oldest position
                        _keep_last(cache, block - 1)
                        cached = block - 1
                    logits, _ = model(tokens[:, -1:], cache=cache, start_pos=position,
                                      last_only=True)
                    cached, position = cached + 1, position + 1
                nxt = sample_next(asnumpy(logits.data[:, -1, :]), rng, temperature, top_k, top_p)
                column = np.full(len(idx), pad_id, dtype=np.int64)
                column[rows] = nxt
                yield column
                tokens = np.concatenate([tokens, nxt[:, None].astype(tokens.dtype)], axis=1)
                going = ~np.isin(nxt, stops)
                if not going.all():  # drop the rows that stopped from the batch
                    if not going.any():
                        return
                    kept = np.flatnonzero(going)
                    tokens, rows = tokens[kept], rows[kept]
                    _keep_rows(cache, kept)
    finally:
        model.train(was_training)


def generate(model, idx, max_new_tokens, **sampling):
    """The prompt followed by the sampled tokens, shape (B, T + new). With stop tokens, a row
    that stopped is filled with `pad_id` (-1) after its stop token (see `stream`; `trim` cuts
    a row back to its text)."""
    idx = np.asarray(idx.data if isinstance(idx, ag.Tensor) else idx)
    squeeze = idx.ndim == 1
    idx2 = idx[None, :] if squeeze else idx
    new = [t[:, None] for t in stream(model, idx2, max_new_tokens, **sampling)]
    dtype = idx2.dtype if idx2.dtype.kind == "i" else np.int64  # room for the padding, -1
    out = np.concatenate([idx2.astype(dtype), *[n.astype(dtype) for n in new]], axis=1)
    return out[0] if squeeze else out


def trim(ids, stop_tokens=(), pad_id=PAD):
    """A row of generated ids cut before its first stop token or padding (a list of ints)."""
    out = []
    for token in ids:
        token = int(token)
        if token == pad_id or token in stop_tokens:
            break
        out.append(token)
    return out
