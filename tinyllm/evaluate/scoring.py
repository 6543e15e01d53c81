"""How likely the model finds a piece of text: the primitive under every benchmark.

`LMScorer.loglikelihood(requests)` takes (context, continuation) pairs of token ids and returns,
for each, the summed log-probability of the continuation's tokens given everything before them:

    log p(cont | ctx) = sum_j log softmax(logits at position of cont[j-1] or ctx[-1])[cont[j]]

The pair is run as one sequence ``ctx + cont``; the logits at the last ``len(cont)`` positions
before each continuation token give its probability. A sequence longer than the model's
context (`block_size`) loses its oldest context tokens (counted in `truncated`), as in every
harness; a continuation longer than the context itself is scored in chunks of block_size / 2
tokens, each seeing the block_size tokens before it. An empty context starts from the
end-of-text token, the way a document starts.

Batching: the model is causal, so padding on the right changes nothing before it in exact
arithmetic; in floating point a longer row sums its attention and matrix products in another
order, and the last bits move (about 1e-7). So each sequence is padded to a length that depends on
itself alone (its length rounded up to a multiple of `PAD_MULTIPLE`), and batches group equal
lengths: a pair's score then never depends on its batch-mates, and a batch gives exactly (bit for
bit) what scoring the pairs one by one gives (tests/tinyllm/test_eval_scoring.py checks it on a
real GPT). Log-probabilities are computed per row in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autograd as ag
from autograd.backend import asnumpy

__all__ = ["LMScorer", "ContinuationScore", "PAD_MULTIPLE"]

PAD_MULTIPLE = 32


@dataclass(frozen=True)
class ContinuationScore:
    """The log-likelihood of one continuation: its sum, its token count, whether every token was
    the model's top choice (greedy), and whether context had to be cut to fit."""

    logprob: float
    n_tokens: int
    greedy: bool
    truncated: bool


def _log_softmax64(rows):
    rows = np.asarray(rows, dtype=np.float64)
    shifted = rows - rows.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class LMScorer:
    """Scores text with a GPT and its tokenizer. `batch_size` sequences run per forward pass."""

    def __init__(self, model, tokenizer, batch_size: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.block_size = model.config.block_size
        eot = tokenizer.special_tokens.get("<|endoftext|>")
        self.start_id = eot if eot is not None else 0

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode_ordinary(text)

    def _windows(self, context, continuation):
        """The sequences to run for one pair, as (tokens, how many final targets it scores), and
        whether context was lost. Each sequence is at most block_size inputs plus one target."""
        context = list(context) or [self.start_id]
        continuation = list(continuation)
        if not continuation:
            raise ValueError("an empty continuation has no likelihood to score")
        seq, first, block = context + continuation, len(context), self.block_size
        if len(seq) - 1 <= block:
            return [(seq, len(continuation))], False
        if len(continuation) < block:  # fits once the oldest context is cut
            return [(seq[-(block + 1):], len(continuation))], True
        # A continuation longer than the context window: its targets in chunks of block/2,
        # each predicted from the block_size tokens before it (at least block/2 of context).
        out, target, step = [], first, max(1, block // 2)
        while target < len(seq):
            end = min(len(seq), target + step)
            out.append((seq[max(0, end - 1 - block) : end], end - target))
            target = end
        return out, out[0][1] > 0 and len(out[0][0]) < first + out[0][1]

    def _padded_length(self, n_inputs):
        return min(self.block_size, -(-n_inputs // PAD_MULTIPLE) * PAD_MULTIPLE)

    def _forward(self, batch):
        """Logits (B, L, V) as a host array for right-padded sequences (inputs only)."""
        length = self._padded_length(len(batch[0]) - 1)
        ids = np.zeros((len(batch), length), dtype=np.int64)
        for row, seq in enumerate(batch):
            ids[row, : len(seq) - 1] = seq[:-1]
        with ag.no_grad():
            logits, _ = self.model(ids)
        return asnumpy(logits.data)

    def _batches(self, n, lengths):
        """Index batches of sequences with the same padded length (see the module docstring)."""
        groups: dict[int, list[int]] = {}
        for i in range(n):
            groups.setdefault(self._padded_length(lengths[i] - 1), []).append(i)
        for _, members in sorted(groups.items(), reverse=True):
            for start in range(0, len(members), self.batch_size):
                yield members[start : start + self.batch_size]

    def loglikelihood(self, requests, progress=None) -> list[ContinuationScore]:
        """Score (context ids, continuation ids) pairs; results in the order of `requests`."""
        windows, owner, truncated = [], [], []
        for i, (ctx, cont) in enumerate(requests):
            pieces, cut = self._windows(ctx, cont)
            windows += pieces
            owner += [i] * len(pieces)
            truncated.append(cut)
        logprob = np.zeros(len(requests))
        greedy = np.ones(len(requests), dtype=bool)
        was_training = self.model.training
        self.model.eval()
        try:
            for index in self._batches(len(windows), [len(s) for s, _ in windows]):
                logits = self._forward([windows[w][0] for w in index])
                for row, w in enumerate(index):
                    seq, n_scored = windows[w]
                    positions = np.arange(len(seq) - 1 - n_scored, len(seq) - 1)
                    logp = _log_softmax64(logits[row, positions])
                    targets = np.asarray(seq[-n_scored:])
                    logprob[owner[w]] += logp[np.arange(n_scored), targets].sum()
                    greedy[owner[w]] &= bool((logp.argmax(-1) == targets).all())
                if progress is not None:
                    progress.update(len(index))
        finally:
            self.model.train(was_training)
        return [ContinuationScore(float(logprob[i]), len(cont), bool(greedy[i]), truncated[i])
                for i, (_, cont) in enumerate(requests)]

    def next_token_logprobs(self, contexts, progress=None) -> tuple[np.ndarray, list[bool]]:
        """log p(next token | context) over the whole vocabulary, float64 (N, V); and whether
        each context was cut to fit."""
        fitted = []
        for ctx in contexts:
            ctx = list(ctx) or [self.start_id]
            fitted.append((ctx[-self.block_size :] + [0], len(ctx) > self.block_size))
        out = np.empty((len(fitted), self.model.config.vocab_size))
        was_training = self.model.training
        self.model.eval()
        try:
            for index in self._batches(len(fitted), [len(s) for s, _ in fitted]):
                logits = self._forward([fitted[i][0] for i in index])
                for row, i in enumerate(index):
                    out[i] = _log_softmax64(logits[row, len(fitted[i][0]) - 2])
                if progress is not None:
                    progress.update(len(index))
        finally:
            self.model.train(was_training)
        return out, [t for _, t in fitted]

    def greedy_text(self, context, max_new_tokens: int) -> str:
        """The model's most likely continuation (greedy), decoded; stops at end-of-text."""
        ctx = (list(context) or [self.start_id])[-self.block_size :]
        out = self.model.generate(np.asarray([ctx]), max_new_tokens, temperature=0,
                                  stop_tokens=list(self.tokenizer.special_tokens.values()))
        new = [t for t in out[0, len(ctx):].tolist()
               if t not in self.tokenizer.special_tokens.values()]
        return self.tokenizer.decode(new)
