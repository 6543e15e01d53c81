"""A built-in benchmark made from documentation the model never trained on: "which line comes next?"

`nextline_set("pydoc")` builds, with a seed and no download, a four-way completion set from the
held-out documents of a built-in corpus:

- the held-out documents are the validation and test documents of the corpus prepared by
  `tinyllm.data.prepare` itself (see `held_out_documents`), so the model's training split
  never contains them, whatever rule the data pipeline splits by;
- a question is a line of such a document (25 to 150 characters, seen in no training
  document and only once among the held-out ones), its context the lines before it (up to
  `context_lines` lines), and its wrong endings three lines of *other* held-out documents of
  similar length (between two thirds and one and a half times as long), so a model cannot
  win by preferring short lines or by recalling text it trained on;
- the right ending's position is shuffled; everything is drawn from `numpy.random.default_rng(seed)`.

A model that has learned how documentation reads, and attends to the context, beats the 25%
chance line; one that has not stays at chance. Used as ``--data builtin:nextline`` (pydoc) or
``builtin:nextline-stdlib``; `--task complete` scores it as continuations of the context,
`--task mc` as questions.

When the evaluated run has its prepared training tokens (RUN/data/train.bin), `drop_seen`
removes any item whose right line occurs in that training text, and the report counts them:
a check that holds even if the data pipeline's split rule changes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from tinyllm.evaluate.mc_data import MCItem, MCSet

__all__ = ["nextline_set", "held_out_documents", "corpus_splits", "drop_seen", "BUILTIN_SETS", "load_builtin"]

BUILTIN_SETS = ("nextline", "nextline-stdlib")


def held_out_documents(corpus: str = "pydoc"):
    """(held-out [(name, text)], training texts) of a built-in corpus: the documents of the
    validation and test splits, and those of the training split (see `corpus_splits`)."""
    splits = corpus_splits(corpus)
    held = splits["val"] + splits["test"]
    return [(_name_of(text), text) for text in held], splits["train"]


@functools.cache
def corpus_splits(corpus: str = "pydoc") -> dict[str, list[str]]:
    """The documents of each split ("train", "val", "test") of a built-in corpus, exactly as
    `tinyllm.data.prepare` splits it: the corpus is prepared (with a byte-level tokenizer, which
    is quick and decodes back to the very text) and the documents of its held-out token files
    (val.bin and test.bin) are read back, split at the end-of-text tokens. Whatever rule the
    data pipeline uses to split, these are the documents a run on this corpus never trains on."""
    import tempfile

    from tinyllm.data.dataset import read_tokens
    from tinyllm.data.prepare import EOT, prepare
    from tinyllm.tokenizer import BPETokenizer

    byte_level = BPETokenizer(merges={}, special_tokens={EOT: 256})
    with tempfile.TemporaryDirectory(prefix="tinyllm-heldout-") as tmp:
        folder = Path(tmp) / "prepared"
        prepare(f"builtin:{corpus}", folder, tokenizer=byte_level, progress=False)

        def documents(split):
            path = folder / f"{split}.bin"
            if not path.exists():
                return []
            ids = np.asarray(read_tokens(path)).astype(np.int64)
            cuts = np.flatnonzero(ids == 256)
            pieces = np.split(ids, cuts + 1)
            return [byte_level.decode(p[p != 256].tolist()) for p in pieces if (p != 256).any()]

        return {split: documents(split) for split in ("train", "val", "test")}


def _name_of(text: str) -> str:
    """A short name for a document: its first line (a pydoc topic's title, a module's name)."""
    first = text.strip().split("\n", 1)[0].strip()
    return first[:40] or "untitled"


def nextline_set(corpus: str = "pydoc", n_choices: int = 4, seed: int = 0,
                 context_lines: int = 6, max_items: int | None = None,
                 min_chars: int = 25, max_chars: int = 150) -> MCSet:
    """The "which line comes next" set of a built-in corpus (see the module docstring)."""
    held, train = held_out_documents(corpus)
    seen = {line.strip() for doc in train for line in doc.split("\n")}
    counts: dict[str, int] = {}
    for _, doc in held:
        for line in doc.split("\n"):
            counts[line.strip()] = counts.get(line.strip(), 0) + 1

    def usable(line):
        key = line.strip()
        return min_chars <= len(key) <= max_chars and key not in seen and counts[key] == 1

    # (document number, line number) of every usable line; the pool of wrong endings too.
    candidates = [(d, j) for d, (_, doc) in enumerate(held)
                  for j, line in enumerate(doc.split("\n")) if j > 0 and usable(line)]
    pool = [(d, line.rstrip()) for d, (_, doc) in enumerate(held)
            for line in doc.split("\n") if usable(line)]
    pool_lengths = np.array([len(line) for _, line in pool])
    pool_docs = np.array([d for d, _ in pool])
    rng = np.random.default_rng(seed)
    if max_items is not None and len(candidates) > max_items:
        chosen = np.sort(rng.choice(len(candidates), size=max_items, replace=False))
        candidates = [candidates[i] for i in chosen]
    items = []
    for d, j in candidates:
        name, doc = held[d]
        lines = doc.split("\n")
        right = lines[j].rstrip()
        context = "\n".join(lines[max(0, j - context_lines) : j]) + "\n"
        similar = np.flatnonzero((pool_docs != d) & (pool_lengths >= len(right) * 2 / 3)
                                 & (pool_lengths <= len(right) * 1.5))
        if len(similar) < n_choices - 1:
            continue
        wrong = [pool[i][1] for i in rng.choice(similar, size=n_choices - 1, replace=False)]
        answer = int(rng.integers(n_choices))
        choices = wrong[:answer] + [right] + wrong[answer:]
        items.append(MCItem(context, tuple(choices), answer, name,
                            f"builtin:nextline/{name}:{j + 1}"))
    if not items:
        raise ValueError(f"the held-out documents of {corpus!r} gave no questions")
    suffix = "" if corpus == "pydoc" else f"-{corpus}"
    return MCSet(items, {}, f"builtin:nextline{suffix}")


def drop_seen(mcset: MCSet, training_text: str) -> tuple[MCSet, int]:
    """`mcset` without the items whose right answer appears in `training_text`; and how many."""
    keep = [item for item in mcset.items if item.choices[item.answer].strip() not in training_text]
    return MCSet(keep, mcset.dev, mcset.name), len(mcset.items) - len(keep)


def load_builtin(name: str, seed: int = 0) -> MCSet:
    """A built-in set by name: ``nextline`` (pydoc) or ``nextline-stdlib``."""
    if name == "nextline":
        return nextline_set("pydoc", seed=seed)
    if name == "nextline-stdlib":
        return nextline_set("stdlib", seed=seed, max_items=1000)
    raise ValueError(f"unknown built-in set {name!r}; choose one of {BUILTIN_SETS}")
