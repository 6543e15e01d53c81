"""`tinyllm eval --task ppl`: perplexity and bits per byte of a run on any text.

The scoring itself is `tinyllm.evaluate.perplexity.score_tokens` (whole text, non-overlapping
windows or a sliding window with `stride`). This module turns a `--data` argument into tokens:

- ``builtin:NAME``: a built-in corpus, split exactly as `tinyllm.data.prepare` splits it:
  ``--split val`` (default), ``test``, ``heldout`` (both), ``train``, or ``all``;
- a prepared folder (``train.bin``, ``val.bin``, ``tokenizer.json``): its ``SPLIT.bin``, which
  must have been made with the run's tokenizer;
- files or folders of text (``.txt``, ``.md``, ``.html``, ``.jsonl``): every document.

Text is encoded document by document, each preceded by the end-of-text token (the way the
training data separates documents), so every byte of the text is scored once and bits per byte
divide by exactly the bytes of the text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["text_documents", "evaluate_perplexity"]


def text_documents(spec: str, split: str = "val") -> list[str]:
    """The documents named by `spec` (builtin:NAME, a file or a folder)."""
    if spec.startswith("builtin:"):
        from tinyllm.evaluate.builtin_sets import corpus_splits

        splits = corpus_splits(spec[len("builtin:"):])
        wanted = {"val": ["val"], "test": ["test"], "heldout": ["val", "test"], "train": ["train"],
                  "all": ["train", "val", "test"]}.get(split)
        if wanted is None:
            raise ValueError(f"--split for {spec} must be val, test, heldout, train or all, "
                             f"got {split!r}")
        docs = [doc for name in wanted for doc in splits[name]]
        if not docs:
            raise ValueError(f"{spec}: its {split} split is empty")
        return docs
    from tinyllm.data.corpus import iter_documents

    problems = []
    docs = [d for d in iter_documents([spec], on_error=lambda p, e: problems.append(f"{p}: {e}"))
            if d.strip()]
    if problems:
        raise ValueError(problems[0])
    if not docs:
        raise ValueError(f"{spec}: no text to score")
    return docs


def _prepared_tokens(folder: Path, split: str, tokenizer):
    from tinyllm.data.dataset import read_tokens
    from tinyllm.tokenizer import BPETokenizer

    path = folder / f"{split}.bin"
    if not path.exists():
        raise ValueError(f"{folder}: prepared folder has no {split}.bin")
    theirs = BPETokenizer.load(folder / "tokenizer.json")
    if theirs.merges != tokenizer.merges or theirs.special_tokens != tokenizer.special_tokens:
        raise ValueError(f"{folder}: prepared with another tokenizer than the run's; "
                         "pass the text instead")
    return np.asarray(read_tokens(path))


def evaluate_perplexity(model, tokenizer, data: str, split: str = "val", stride=None,
                        batch_size: int = 8, max_tokens=None, seed: int = 0,
                        progress: bool = False) -> dict:
    """Perplexity, loss and bits per byte of `model` on `data`; a JSON-ready dict."""
    from tinyllm.evaluate.perplexity import score_tokens
    from tinyllm.progress import progress_bar

    folder = Path(data)
    text_bytes = None
    if folder.is_dir() and (folder / "tokenizer.json").exists() and any(folder.glob("*.bin")):
        tokens = _prepared_tokens(folder, split, tokenizer)
        source = f"{folder}/{split}.bin"
    else:
        docs = text_documents(data, split)
        eot = tokenizer.special_tokens.get("<|endoftext|>")
        ids = []
        for doc in docs:
            if eot is not None:
                ids.append(eot)
            ids.extend(tokenizer.encode_ordinary(doc))
        tokens = np.asarray(ids, dtype=np.int64)
        text_bytes = sum(len(d.encode("utf-8")) for d in docs)
        source = data if not data.startswith("builtin:") else f"{data} ({split} documents)"
    if len(tokens) < 2:
        raise ValueError(f"{data}: fewer than two tokens to score")
    from tinyllm.evaluate.perplexity import windows

    n_windows = len(windows(len(tokens), model.config.block_size, stride))
    bar = progress_bar(total=n_windows, enabled=progress, desc="scoring", unit="window")
    done = [0]

    def advance(count):
        bar.update(count - done[0])
        done[0] = count

    result = score_tokens(model, tokens, stride=stride, batch_size=batch_size,
                          max_tokens=max_tokens, seed=seed, tokenizer=tokenizer,
                          progress=advance)
    bar.close()
    out = {"task": "ppl", "data": source, "split": split, "loss": result.loss,
           "ppl": result.perplexity, "bpb": result.bits_per_byte, "tokens": result.tokens,
           "bytes": result.bytes, "windows": result.windows, "sampled": result.sampled,
           "stride": stride or model.config.block_size,
           "block_size": model.config.block_size}
    if text_bytes is not None and not result.sampled and result.bytes != text_bytes:
        raise RuntimeError(f"scored {result.bytes} bytes of a {text_bytes}-byte text")  # a bug
    return out
