"""Perplexity and bits per byte of a model on a token array, every token scored exactly once.

A language model assigns each token t[i] a probability given the tokens before it; the loss of
a split is the sum of -ln p(t[i] | context) over its tokens, in nats. We cut the array into
windows the model can see at once (block_size tokens) and score inside each window:

    non-overlapping (stride = block_size, the default)
        window k reads t[kT : kT+T] and predicts t[kT+1 : kT+T+1]. Every token after the first
        is predicted exactly once; a token early in a window sees little context.

    sliding (stride S < block_size)
        windows start every S tokens; each window predicts only the tokens no earlier window
        predicted (its last S), so every token is still scored once, now with at least T - S
        tokens of context. Costs T / S times as much compute; the loss is lower and closer to
        what the model does when generating.

Token 0 has no context and is never scored: `tokens_scored` is len(tokens) - 1 for a whole
split. (`score_text` puts an end-of-text token in front so that every token of a text counts.)

Large splits: with `max_tokens`, when the split has more tokens than that, a seeded random
sample of whole windows is scored instead (`numpy.random.default_rng(seed)`, windows drawn
without replacement, then scored in order). The same seed gives the same windows on every call,
so evaluations at different training steps are comparable. The result says `sampled=True`.

Bits per byte measures compression independently of the tokenizer:

    bits per byte = total nats / ln 2 / bytes of exactly the scored tokens

The bytes are those of the scored tokens themselves (special tokens such as <|endoftext|> count
as zero bytes), never an average ratio of the split, so a sample gets its own bytes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

import autograd as ag
from autograd.backend import asnumpy

__all__ = ["PerplexityResult", "score_tokens", "score_text", "token_byte_lengths", "windows"]


@dataclass
class PerplexityResult:
    """Totals of one scoring pass; the means are derived from them."""

    nats: float  # sum of -ln p(token | context) over the scored tokens
    tokens: int  # how many tokens were scored
    bytes: int | None  # bytes of exactly the scored tokens (None when no tokenizer was given)
    windows: int  # how many windows were run through the model
    sampled: bool  # True when a seeded sample of windows stood in for the whole array
    total_tokens: int  # tokens that scoring the whole array would have scored

    @property
    def loss(self) -> float:
        """Mean nats per scored token (the cross-entropy)."""
        return self.nats / self.tokens if self.tokens else math.nan

    @property
    def perplexity(self) -> float:
        """exp(loss), capped at exp(50) so a diverged model does not overflow."""
        return math.exp(min(self.loss, 50.0))

    @property
    def bits_per_byte(self) -> float | None:
        if not self.bytes:
            return None
        return self.nats / math.log(2) / self.bytes

    def to_dict(self, prefix: str = "") -> dict:
        """Flat, JSON-ready numbers: loss, ppl, bpb, tokens, bytes, sampled (with `prefix`)."""
        out = {"loss": self.loss, "ppl": self.perplexity, "bpb": self.bits_per_byte,
               "tokens": self.tokens, "bytes": self.bytes, "sampled": self.sampled}
        return {f"{prefix}{k}": v for k, v in out.items()}

    def as_dict(self) -> dict:
        return asdict(self)


def token_byte_lengths(tokenizer) -> np.ndarray:
    """The number of text bytes of every token id (special tokens: 0), for counting the bytes
    of scored tokens with one indexing operation."""
    lengths = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for token_id, raw in tokenizer.vocab.items():
        lengths[token_id] = len(raw)
    for token_id in tokenizer.special_tokens.values():
        lengths[token_id] = 0
    return lengths


def windows(n_tokens: int, block_size: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """The windows that score an array of `n_tokens` tokens once each, as (start, length, new):
    the window reads tokens[start : start + length], predicts tokens[start + 1 : start + length
    + 1], and scores only its last `new` predictions (the ones no earlier window made)."""
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    stride = block_size if stride is None else int(stride)
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be between 1 and block_size={block_size}, got {stride}")
    out, scored_until = [], 0  # predictions of targets 1 .. scored_until are done
    last_target = n_tokens - 1
    start = 0
    while scored_until < last_target:
        length = min(block_size, last_target - start)
        end = start + length  # this window predicts targets start+1 .. end
        out.append((start, length, end - scored_until))
        scored_until = end
        start += stride
    return out


def _sample(spans, max_tokens, seed):
    """A seeded random subset of `spans` scoring about `max_tokens` tokens, in array order."""
    per_window = max(new for _, _, new in spans)
    count = min(len(spans), max(1, math.ceil(max_tokens / per_window)))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(spans), size=count, replace=False))
    return [spans[i] for i in chosen]


def _nats_per_position(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-ln softmax(logits)[target] for every position, in float64: (B, T)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    picked = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    return log_norm - picked


def score_tokens(model, tokens, *, block_size: int | None = None, stride: int | None = None,
                 batch_size: int = 8, max_tokens: int | None = None, seed: int = 0,
                 tokenizer=None, num_bytes: int | None = None, progress=None,
                 part: tuple[int, int] = (0, 1)) -> PerplexityResult:
    """Score `tokens` (a 1-D integer array, e.g. a memory-mapped val.bin) with `model`.

    block_size: window length (default: the model's). stride: see the module docstring.
    batch_size: windows per forward pass. max_tokens / seed: score a seeded sample of windows
    when the array has more tokens than this (None: always the whole array). tokenizer: counts
    the bytes of exactly the scored tokens, for bits per byte; or pass `num_bytes`, the byte
    count of exactly the scored text, when you know it. progress: called with the number of
    windows done after each batch. part=(k, n): score only every n-th window from the k-th,
    one of n disjoint parts whose totals add up to the whole (data-parallel ranks share an
    evaluation so). The model is put in eval mode (no dropout) and restored.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be a 1-D array, got shape {tokens.shape}")
    if len(tokens) < 2:
        raise ValueError(f"need at least 2 tokens to score one, got {len(tokens)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    block_size = block_size or model.config.block_size
    spans = windows(len(tokens), block_size, stride)
    total = len(tokens) - 1
    sampled = max_tokens is not None and total > max_tokens
    if sampled:
        spans = _sample(spans, max_tokens, seed)
    spans = spans[part[0]::part[1]]
    lengths = token_byte_lengths(tokenizer) if tokenizer is not None else None

    nats, scored, scored_bytes = 0.0, 0, 0
    was_training = model.training
    model.eval()
    try:
        with ag.no_grad():
            # Windows of equal length share a batch (only the last window can be shorter).
            for i in range(0, len(spans), batch_size):
                batch = spans[i:i + batch_size]
                for length in sorted({length for _, length, _ in batch}):
                    group = [s for s in batch if s[1] == length]
                    rows = np.stack([tokens[s:s + length + 1] for s, _, _ in group]).astype(np.int64)
                    logits = model(rows[:, :-1])[0]
                    per_position = _nats_per_position(asnumpy(logits.data), rows[:, 1:])
                    for row, (_, _, new) in enumerate(group):
                        nats += float(per_position[row, length - new:].sum())
                        scored += new
                        if lengths is not None:
                            scored_bytes += int(lengths[rows[row, length + 1 - new:]].sum())
                if progress is not None:
                    progress(min(i + batch_size, len(spans)))
    finally:
        model.train(was_training)
    if num_bytes is not None:
        scored_bytes = int(num_bytes)
    elif lengths is None:
        scored_bytes = None
    return PerplexityResult(nats=nats, tokens=scored, bytes=scored_bytes, windows=len(spans),
                            sampled=sampled, total_tokens=total)


def score_text(model, tokenizer, text: str, **options) -> PerplexityResult:
    """Score every token of `text`: an end-of-text token goes in front as the first context (when
    the tokenizer has one), so the scored bytes are exactly the bytes of `text`."""
    ids = tokenizer.encode(text, allowed_special="none")
    eot = tokenizer.special_tokens.get("<|endoftext|>")
    if eot is not None:
        ids = [eot, *ids]
    return score_tokens(model, np.asarray(ids, dtype=np.int64), tokenizer=tokenizer, **options)
