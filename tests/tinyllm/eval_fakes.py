"""A hand-made language model whose logits are known, and a tiny tokenizer, for scoring tests.

`BigramModel`: the logits at a position depend only on the token there (a table row), so the
log-likelihood of any text is a sum that a test can compute by hand.
`ByteTokenizer`: one token per UTF-8 byte, the end-of-text token 256, and optionally the four
strings " A", " B", " C", " D" as single tokens 257..260 (as a BPE tokenizer would have them).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

import autograd as ag

EOT = 256
LETTER_IDS = {" A": 257, " B": 258, " C": 259, " D": 260}


class ByteTokenizer:
    def __init__(self, letter_tokens=True):
        self.letter_tokens = letter_tokens
        self.special_tokens = {"<|endoftext|>": EOT}
        self.vocab_size = 261

    def encode_ordinary(self, text):
        if not self.letter_tokens:
            return list(text.encode("utf-8"))
        ids = []
        for piece in re.split(r"( [ABCD])(?![A-Za-z])", text):
            if piece in LETTER_IDS:
                ids.append(LETTER_IDS[piece])
            else:
                ids.extend(piece.encode("utf-8"))
        return ids

    def decode(self, ids):
        inverse = {v: k.encode() for k, v in LETTER_IDS.items()}
        return b"".join(inverse.get(i, bytes([i]) if i < 256 else b"") for i in ids).decode(
            "utf-8", "replace")


class BigramModel:
    """logits[b, t] = table[ids[b, t]]; a GPT's calling conventions (cache, last_only)."""

    def __init__(self, table, block_size=64):
        self.table = np.asarray(table, dtype=np.float32)
        self.config = SimpleNamespace(block_size=block_size, vocab_size=self.table.shape[1],
                                      n_layer=1, pos="learned")
        self.training = True
        self.calls = 0

    def eval(self):
        return self.train(False)

    def train(self, mode=True):
        self.training = mode
        return self

    def __call__(self, idx, targets=None, cache=None, start_pos=0, last_only=False):
        idx = np.asarray(idx)
        if idx.shape[1] > self.config.block_size:
            raise ValueError("longer than block_size")
        self.calls += 1
        logits = self.table[idx]
        if last_only:
            logits = logits[:, -1:]
        return ag.tensor(logits), None

    def generate(self, idx, max_new_tokens, **sampling):
        from tinyllm.generate import generate

        return generate(self, idx, max_new_tokens, **sampling)


def log_softmax(row):
    row = np.asarray(row, dtype=np.float64)
    return row - row.max() - np.log(np.exp(row - row.max()).sum())


def hand_loglik(table, context_ids, continuation_ids):
    """The log-likelihood of a continuation under BigramModel, by a plain loop."""
    seq = list(context_ids) + list(continuation_ids)
    total = 0.0
    for j in range(len(context_ids), len(seq)):
        total += log_softmax(np.asarray(table, dtype=np.float32)[seq[j - 1]])[seq[j]]
    return total
