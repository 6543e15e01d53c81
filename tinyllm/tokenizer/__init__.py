"""Byte-level BPE tokenization (GPT-2 / GPT-4 style), trained and run in Python.

```python
from tinyllm.tokenizer import BPETokenizer
tok = BPETokenizer.train(text, vocab_size=1024, pattern="gpt4", special_tokens=["<|endoftext|>"])
ids = tok.encode("hello world<|endoftext|>", allowed_special="all")
tok.decode(ids); tok.save("tok.json"); BPETokenizer.load("tok.json")
```

Modules: `patterns` (split regexes), `train` (the reference trainer, which is the
specification, and the fast trainer that equals it), `bpe` (the tokenizer), `io` (file formats:
this project's JSON, GPT-2 ``vocab.json`` + ``merges.txt``, tiktoken rank files, HF
``tokenizer.json`` export), `cli` (``tinyllm tokenizer ...``).
"""

from .bpe import BPETokenizer
from .io import TokenizerFileError
from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, PATTERNS
from .train import TrainResult, train_bpe, train_reference

__all__ = [
    "BPETokenizer",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "PATTERNS",
    "TokenizerFileError",
    "TrainResult",
    "train_bpe",
    "train_reference",
]
