"""Where the text comes from: two built-in corpora and streams of user files.

Built-in corpora need no download, so a first training run works offline:

- ``"pydoc"``: the English reference documentation that ships inside CPython
  (`pydoc_data.topics`, the text behind ``help("assert")``): about 80 documents, 0.46 MB.
- ``"stdlib"``: the docstrings of the installed standard library, read from the source files
  with `ast` (nothing is imported or executed): one document per module, about 1.8 MB.

User corpora are files or folders of ``.txt``, ``.md``, ``.html``/``.htm`` and ``.jsonl`` (one
JSON object per line, text in its ``"text"`` field), read as a stream: at most one document,
and for large text files one chunk of a document, is in memory at a time.

Splits are by document and deterministic: `is_validation(i, val_fraction)` sends document
number 9, 19, 29, ... (for a tenth) to validation, whatever the machine or the run;
`SplitPlan` extends the rule to three splits (train / val / test) for `tinyllm prepare`, and
`cut_into_pieces` cuts the documents of a small corpus at paragraph breaks so that the held-out
splits exist even when the corpus is one file.
"""

from __future__ import annotations

import ast
import json
import math
import os
import sysconfig
import warnings
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path

__all__ = [
    "BUILTIN_CORPORA",
    "SplitPlan",
    "cut_into_pieces",
    "builtin_documents",
    "builtin_split",
    "is_validation",
    "iter_documents",
    "iter_files",
    "stdlib_documents",
    "SUFFIXES",
]

BUILTIN_CORPORA = ("pydoc", "stdlib")

# File kinds read by `iter_documents`, by suffix.
SUFFIXES = (".txt", ".md", ".html", ".htm", ".jsonl")

# Text files larger than this are split into several documents at paragraph breaks, so that
# one huge file never has to be in memory at once.
MAX_DOC_CHARS = 1 << 20

# Folders of the standard library that hold tests or vendored third-party code, not docs.
_STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test",
                     "__pycache__", "lib2to3"}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def is_validation(index: int, val_fraction: float) -> bool:
    """Whether document number `index` (from 0) belongs to the validation split.

    Document i goes to validation when ``floor((i + 1) * f) > floor(i * f)``: exactly one in
    every ``1/f`` documents (numbers 9, 19, 29, ... for f = 0.1), evenly spread, and the answer
    for a document never depends on how many follow it, so a stream can be split on the fly.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    # The small epsilon keeps fractions like 0.1, which are not exact in binary, on the grid.
    return math.floor((index + 1) * val_fraction + 1e-9) > math.floor(index * val_fraction + 1e-9)


def split_documents(docs: list[str], val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """Split a list of documents into (train, val) with `is_validation`.

    A list of two or more documents always gets at least one validation document when
    `val_fraction` is positive (the last one, if the rule picked none).
    """
    train, val = [], []
    for i, doc in enumerate(docs):
        (val if is_validation(i, val_fraction) else train).append(doc)
    if val_fraction > 0 and not val and len(train) >= 2:
        val.append(train.pop())
    return train, val


class SplitPlan:
    """Which split (``"train"``, ``"val"`` or ``"test"``) each of `n_units` units goes to.

    The rule, deterministic and streamable: unit i is *held out* when
    ``is_validation(i, val_fraction + test_fraction)``; held-out units then alternate between
    val and test in proportion, the j-th going to test when ``is_validation(j, test_share)``
    with ``test_share = test_fraction / (val_fraction + test_fraction)``. For 0.1 and 0.1 that
    is units 4, 14, 24, ... to val and 9, 19, 29, ... to test.

    A split asked for (fraction > 0) is never left empty when there are enough units: if the
    rule gives val no unit, the last training unit goes to val (from 2 units on); if it gives
    test none, the last training unit goes to test (from 3 units on). Training keeps at
    least one unit.
    """

    SPLITS = ("train", "val", "test")

    def __init__(self, n_units: int, val_fraction: float = 0.1, test_fraction: float = 0.1):
        if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0):
            raise ValueError(
                f"val_fraction and test_fraction must be in [0, 1), got {val_fraction} and "
                f"{test_fraction}"
            )
        held = val_fraction + test_fraction
        if held >= 1.0:
            raise ValueError(f"val_fraction + test_fraction must be below 1, got {held}")
        self.n_units = n_units
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self._held, self._test_share = held, (test_fraction / held if held else 0.0)
        self._forced: dict[int, str] = {}
        counts = self.counts()
        for split, fraction, minimum in (("val", val_fraction, 2), ("test", test_fraction, 3)):
            if fraction > 0 and counts[split] == 0 and n_units >= minimum:
                last_train = max(i for i in range(n_units) if self(i) == "train")
                self._forced[last_train] = split
                counts = self.counts()

    def _rule(self, index: int) -> str:
        if not is_validation(index, self._held):
            return "train"
        held_index = math.floor(index * self._held + 1e-9)  # how many units before were held
        return "test" if is_validation(held_index, self._test_share) else "val"

    def __call__(self, index: int) -> str:
        return self._forced.get(index) or self._rule(index)

    def counts(self) -> dict[str, int]:
        """How many units each split gets."""
        counts = dict.fromkeys(self.SPLITS, 0)
        for i in range(self.n_units):
            counts[self(i)] += 1
        return counts


def cut_into_pieces(text: str, max_chars: int) -> list[str]:
    """Cut `text` into consecutive pieces of at most about `max_chars` characters.

    Cuts fall after a blank line (a paragraph break) when the piece has one, else after a line
    end; a single line longer than `max_chars` stays whole. Joining the pieces gives `text`
    back exactly (each piece keeps the newlines that end it).
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    pieces = []
    start = 0
    while len(text) - start > max_chars:
        end = start + max_chars
        cut = text.rfind("\n\n", start, end)
        if cut >= start:
            cut += 2
        else:
            cut = text.rfind("\n", start, end)
            if cut >= start:
                cut += 1
            else:  # one long line: cut after its end
                cut = text.find("\n", end)
                if cut < 0:
                    break
                cut += 1
        pieces.append(text[start:cut])
        start = cut
    if start < len(text):
        pieces.append(text[start:])
    return pieces


# --------------------------------------------------------------------------------------------
# Built-in corpora
# --------------------------------------------------------------------------------------------


@cache
def _pydoc_documents() -> tuple[str, ...]:
    from pydoc_data.topics import topics

    # Sorted by topic name, so the order (and therefore the split) is the same everywhere.
    return tuple(topics[name].strip() for name in sorted(topics))


def _module_docstrings(tree: ast.Module, module: str) -> str:
    """All docstrings of one parsed module as one document: the module's first, then each
    class, function and method's, headed by its qualified name."""
    parts = []
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        parts.append(f"{module}\n\n{doc}")

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                doc = ast.get_docstring(child, clean=True)
                if doc:
                    parts.append(f"{name}\n\n{doc}")
                visit(child, name + ".")

    visit(tree, module + ".")
    return "\n\n".join(parts)


def stdlib_documents(
    root: str | os.PathLike | None = None, on_error: Callable[[str, str], None] | None = None
) -> list[str]:
    """One document per module of the standard library at `root` (default: the running
    Python's), made of its docstrings. Files are parsed with `ast`, never imported; modules
    without docstrings give no document; unparsable files are passed to `on_error`."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    docs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP_DIRS)
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            path = Path(dirpath) / filename
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except (SyntaxError, ValueError, OSError) as err:
                if on_error is not None:
                    on_error(str(path), f"{type(err).__name__}: {err}")
                continue
            text = _module_docstrings(tree, module)
            if text:
                docs.append(text)
    return docs


@cache
def _stdlib_documents_cached() -> tuple[str, ...]:
    return tuple(stdlib_documents())


def builtin_documents(name: str = "pydoc") -> list[str]:
    """The documents of a built-in corpus, in a fixed order: ``"pydoc"`` or ``"stdlib"``."""
    if name == "pydoc":
        return list(_pydoc_documents())
    if name == "stdlib":
        return list(_stdlib_documents_cached())
    raise ValueError(f"unknown built-in corpus {name!r}; choose one of {BUILTIN_CORPORA}")


def builtin_split(name: str = "pydoc", val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """(train_docs, val_docs) of a built-in corpus; the same split on every run and machine."""
    return split_documents(builtin_documents(name), val_fraction)


# --------------------------------------------------------------------------------------------
# User corpora
# --------------------------------------------------------------------------------------------


def iter_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Every readable-kind file under `paths`, folders walked recursively in sorted order.

    Hidden files and folders (name starting with ".") inside folders are skipped, as are
    files of other kinds. A path that does not exist raises FileNotFoundError: a typo on the
    command line should stop the run, not silently shrink the corpus.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for filename in sorted(filenames):
                    if not filename.startswith(".") and filename.lower().endswith(SUFFIXES):
                        yield Path(dirpath) / filename
        elif path.exists() or path.is_symlink():
            yield path  # named explicitly: read it whatever its suffix (as plain text)
        else:
            raise FileNotFoundError(f"input not found: {path}")


def _read_text_chunks(path: Path, max_chars: int) -> Iterator[str]:
    """Yield a text file as documents of at most about `max_chars` characters, cut at blank
    lines when possible (a small file is one document)."""
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        buffer = ""
        while True:
            block = f.read(max_chars)
            if not block:
                break
            buffer += block
            while len(buffer) >= max_chars:
                cut = buffer.rfind("\n\n", 0, max_chars)
                cut = cut + 2 if cut > 0 else max_chars
                yield buffer[:cut]
                buffer = buffer[cut:]
        if buffer:
            yield buffer


def _read_jsonl(path: Path, on_error: Callable[[str, str], None]) -> Iterator[str]:
    bad, first_bad = 0, ""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
                if not isinstance(text, str):
                    raise TypeError("'text' is not a string")
            except (ValueError, KeyError, TypeError) as err:
                bad += 1
                first_bad = first_bad or f"line {number}: {type(err).__name__}: {err}"
                continue
            yield text
    if bad:
        on_error(str(path), f"{bad} unreadable line(s) skipped, first at {first_bad}")


def _read_html(path: Path) -> str:
    from tinyllm.data.clean import html_to_text

    return html_to_text(path.read_text(encoding="utf-8", errors="replace"))


def _warn(path: str, error: str) -> None:
    warnings.warn(f"skipped unreadable input {path}: {error}", stacklevel=3)


def iter_documents(
    paths: Iterable[str | os.PathLike],
    on_error: Callable[[str, str], None] | None = None,
    max_doc_chars: int = MAX_DOC_CHARS,
) -> Iterator[str]:
    """Stream the documents of files and folders, in a deterministic order.

    - ``.txt``, ``.md`` (and any file named explicitly): the file is one document; files
      longer than `max_doc_chars` are cut at blank lines into several;
    - ``.html``, ``.htm``: one document, the visible text (`tinyllm.data.clean.html_to_text`);
    - ``.jsonl``: one document per line, from its ``"text"`` field.

    Text is decoded as UTF-8, undecodable bytes becoming U+FFFD (the quality filter drops
    files that are mostly such bytes). A file that cannot be read, or lines of a ``.jsonl``
    file that cannot be parsed, are reported to ``on_error(path, message)``, which by default
    issues a warning: never silently skipped. Documents are returned as read, not normalised.
    """
    on_error = on_error or _warn
    for path in iter_files(paths):
        suffix = path.suffix.lower()
        try:
            if suffix == ".jsonl":
                yield from _read_jsonl(path, on_error)
            elif suffix in (".html", ".htm"):
                yield _read_html(path)
            else:
                yield from _read_text_chunks(path, max_doc_chars)
        except OSError as err:
            on_error(str(path), f"{type(err).__name__}: {err.strerror or err}")
