"""A built-in benchmark made from documentation the model never trained on: "which line comes next?"

`nextline_set("pydoc")` builds, with a seed and no download, a four-way completion set from the
held-out documents of a built-in corpus:

- the held-out documents are found exactly as `tinyllm.data.prepare` finds them (normalise,
  quality filter, drop exact and near duplicates, then every tenth kept document, by
  `is_validation`), so the model's training split never contains them;
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

import numpy as np

from tinyllm.evaluate.mc_data import MCItem, MCSet

__all__ = ["nextline_set", "held_out_documents", "drop_seen", "BUILTIN_SETS", "load_builtin"]

BUILTIN_SETS = ("nextline", "nextline-stdlib")
_BATCH_CHARS = 1 << 20  # prepare's de-duplication batch size


def _document_names(corpus: str, docs: list[str]) -> list[str]:
    if corpus == "pydoc":
        from pydoc_data.topics import topics

        return sorted(topics)
    return [doc.split("\n", 1)[0].strip()[:40] for doc in docs]


def held_out_documents(corpus: str = "pydoc", val_fraction: float = 0.1):
    """(held-out [(name, text)], training texts) of a built-in corpus, split as `prepare` does."""
    from tinyllm.data.clean import FilterConfig, check_quality, normalize
    from tinyllm.data.corpus import builtin_documents, is_validation
    from tinyllm.data.dedup import Deduplicator

    raw = builtin_documents(corpus)
    names = _document_names(corpus, raw)
    filters = FilterConfig()
    cleaned = []
    for name, doc in zip(names, raw):
        text = normalize(doc)
        if check_quality(text, filters) is None:
            cleaned.append((name, text))
    dedup = Deduplicator(threshold=0.8, near=True)
    kept, batch, size = [], [], 0
    for entry in cleaned + [None]:
        if entry is not None:
            batch.append(entry)
            size += len(entry[1])
        if batch and (entry is None or size >= _BATCH_CHARS):
            reasons = dedup.check_batch([text for _, text in batch])
            kept += [e for e, reason in zip(batch, reasons) if reason is None]
            batch, size = [], 0
    held, train = [], []
    for index, (name, text) in enumerate(kept):
        if is_validation(index, val_fraction):
            held.append((name, text))
        else:
            train.append(text)
    return held, train


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
