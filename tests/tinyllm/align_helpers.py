"""Small shared pieces for the alignment tests: a tokenizer with the chat tokens, a tiny GPT."""

from tinyllm.align.vocab import add_chat_tokens
from tinyllm.tokenizer import BPETokenizer

TEXT = ("The quick brown fox jumps over the lazy dog. What is 2 + 3? It is 5. "
        "Reverse the list: a b c. Sort these numbers. Hello, world! ") * 20

_TOK = None


def chat_tokenizer():
    """A small BPE tokenizer (trained once per session) with the chat tokens added."""
    global _TOK
    if _TOK is None:
        base = BPETokenizer.train(TEXT, vocab_size=300, special_tokens=["<|endoftext|>"])
        _TOK = add_chat_tokens(base)[0]
    return _TOK
