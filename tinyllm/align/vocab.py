"""Adding the chat template's special tokens to a pre-trained run.

A run pre-trained on plain text has no ids for `<|user|>`, `<|assistant|>` and friends. Adding
them gives the tokenizer new ids after its last one (the merges, and so the encoding of every
text, are unchanged) and the model one new row per token in its embedding table (which, with tied
weights, is also the output layer).

The new rows start at the mean of the existing rows rather than at random: a new token then
looks like an "average" token to the network, its output logit starts at the average logit
(neither favoured nor suppressed), and fine-tuning moves it from there. A random row of the
initial scale would be an outlier the pre-trained layers have never seen.
"""

from __future__ import annotations

from autograd.backend import get_array_module
from autograd.nn import Parameter
from tinyllm.align.template import CHAT_TOKENS


def has_chat_tokens(tok) -> bool:
    return all(t in tok.special_tokens for t in CHAT_TOKENS)


def add_chat_tokens(tok):
    """A tokenizer equal to `tok` plus any of CHAT_TOKENS it lacks, with ids from
    `tok.vocab_size` up. Returns (tokenizer, number of tokens added)."""
    from tinyllm.tokenizer import BPETokenizer

    specials = tok.special_tokens
    new = [t for t in CHAT_TOKENS if t not in specials]
    if not new:
        return tok, 0
    for i, token in enumerate(new):
        specials[token] = tok.vocab_size + i
    grown = BPETokenizer(tok.merges, tok.pattern_name or tok.pattern, specials, tok.byte_ids)
    return grown, len(new)


def _grow(param, rows):
    """A new Parameter: `param`'s rows followed by `rows` copies of their mean."""
    xp = get_array_module(param.data)
    mean = param.data.mean(axis=0, keepdims=True)
    data = xp.concatenate([param.data, xp.repeat(mean, rows, axis=0)], axis=0)
    return Parameter(data.astype(param.data.dtype), requires_grad=param.requires_grad)


def grow_token_embeddings(model, vocab_size: int) -> int:
    """Grow `model`'s token embedding (and untied output layer) to `vocab_size` rows, the new
    rows set to the mean embedding; updates `model.config.vocab_size`. Returns rows added.
    Do this before making the optimizer: it replaces the Parameter objects."""
    old = model.config.vocab_size
    if vocab_size < old:
        raise ValueError(f"cannot shrink the vocabulary from {old} to {vocab_size}")
    if vocab_size == old:
        return 0
    tables = [model.transformer.wte]
    if not model.config.tie_weights:
        tables.append(model.lm_head)
    for table in tables:
        table.weight = _grow(table.weight, vocab_size - old)
        table.num = vocab_size
    model.config.vocab_size = vocab_size
    return vocab_size - old


def prepare_chat_vocab(tok, model):
    """Make `tok` and `model` ready for the chat template (a no-op when they already are).
    Returns (tokenizer, rows added to the model)."""
    tok, _ = add_chat_tokens(tok)
    return tok, grow_token_embeddings(model, max(tok.vocab_size, model.config.vocab_size))
