"""Reading multiple-choice and completion sets: MMLU's CSV layout, JSONL, HellaSwag-style JSONL.

MMLU ships one CSV file per subject, without a header, each row

    question, choice A, choice B, choice C, choice D, answer letter

in folders ``data/test/SUBJECT_test.csv`` (the questions) and ``data/dev/SUBJECT_dev.csv``
(five worked examples per subject, used as few-shot examples). `load_multiple_choice` accepts
that ``data`` folder, a folder holding the ``*_test.csv`` (and ``*_dev.csv``) files side by side,
or one CSV file; and JSONL files of ``{"question", "choices", "answer", "subject"}`` objects
(``answer``: a 0-based index or a letter).

Completion sets (`load_completion`) are JSONL of ``{"context", "endings", "label", "subject"}``;
HellaSwag's own names (``ctx``, ``endings``, ``label``, ``activity_label``) are read too.

Bad input raises `EvalDataError` with one line naming the file and the row (1-based).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MCItem", "MCSet", "EvalDataError", "LETTERS", "load_multiple_choice",
           "load_completion", "read_mmlu_csv", "read_mc_jsonl"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MMLU_COLUMNS = 6  # question, A, B, C, D, answer


class EvalDataError(ValueError):
    """An evaluation file that cannot be read; the message names the file and row."""


@dataclass(frozen=True)
class MCItem:
    """One question: the prompt text, its choices, the index of the right one, its subject.
    For a completion item `question` is the context and `choices` are the endings."""

    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str = "all"
    source: str = ""  # "file:row", for messages

    @property
    def chance(self) -> float:
        return 1.0 / len(self.choices)


@dataclass
class MCSet:
    """The questions to score and, per subject, the worked examples for few-shot prompts."""

    items: list[MCItem]
    dev: dict[str, list[MCItem]] = field(default_factory=dict)
    name: str = ""


def _subject_of(path: Path) -> str:
    stem = path.stem
    for suffix in ("_test", "_dev", "_val"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def read_mmlu_csv(path, subject: str | None = None) -> list[MCItem]:
    """The rows of one MMLU-layout CSV file (no header; six columns)."""
    path = Path(path)
    subject = subject or _subject_of(path)
    items = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row_number, row in enumerate(csv.reader(f), start=1):
                if not row or all(not cell.strip() for cell in row):
                    continue
                where = f"{path}:{row_number}"
                if len(row) != _MMLU_COLUMNS:
                    raise EvalDataError(f"{where}: expected {_MMLU_COLUMNS} columns (question, A, "
                                        f"B, C, D, answer), found {len(row)}")
                question, *choices, letter = row
                letter = letter.strip().upper()
                if len(letter) != 1 or letter not in LETTERS[: len(choices)]:
                    raise EvalDataError(f"{where}: answer {row[-1]!r} is not one of "
                                        f"{', '.join(LETTERS[: len(choices)])}")
                items.append(MCItem(question, tuple(choices), LETTERS.index(letter), subject,
                                    where))
    except UnicodeDecodeError as err:
        raise EvalDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise EvalDataError(f"{path}: not readable as CSV ({err})") from None
    if not items:
        raise EvalDataError(f"{path}: empty file (no questions)")
    return items


def _jsonl_records(path: Path):
    """(row number, dict) for each non-blank line; a line that is not a JSON object raises."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise EvalDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalDataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise EvalDataError(f"{path}:{number}: expected a JSON object, got "
                                f"{type(record).__name__}")
        count += 1
        yield number, record
    if not count:
        raise EvalDataError(f"{path}: empty file (no questions)")


def _answer_index(value, choices, where) -> int:
    """A 0-based index, a digit string, or a letter -> index into `choices`."""
    n = len(choices)
    if isinstance(value, bool):
        value = None  # true/false are not answers
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
        elif len(text) == 1 and text.upper() in LETTERS[:n]:
            return LETTERS.index(text.upper())
    if isinstance(value, int) and 0 <= value < n:
        return value
    raise EvalDataError(f"{where}: answer {value!r} is not a choice (an index 0..{n - 1} or a "
                        f"letter {LETTERS[0]}..{LETTERS[n - 1]})")


def _choices(value, where, key) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) for c in value):
        raise EvalDataError(f"{where}: {key!r} must be a list of at least two strings")
    return tuple(value)


def read_mc_jsonl(path) -> list[MCItem]:
    """Items from JSONL lines ``{"question", "choices", "answer", "subject"?}``."""
    path = Path(path)
    items = []
    for number, rec in _jsonl_records(path):
        where = f"{path}:{number}"
        missing = [k for k in ("question", "choices", "answer") if k not in rec]
        if missing:
            raise EvalDataError(f"{where}: missing field(s) {', '.join(missing)}")
        choices = _choices(rec["choices"], where, "choices")
        items.append(MCItem(str(rec["question"]), choices, _answer_index(rec["answer"], choices,
                                                                         where),
                            str(rec.get("subject") or _subject_of(path)), where))
    return items


def _mmlu_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(test files, dev files) of an MMLU folder: `data/` with test/ and dev/, or flat."""
    if (folder / "test").is_dir():
        return (sorted((folder / "test").glob("*.csv")),
                sorted((folder / "dev").glob("*.csv")) if (folder / "dev").is_dir() else [])
    tests = sorted(folder.glob("*_test.csv")) or sorted(
        p for p in folder.glob("*.csv") if not p.stem.endswith(("_dev", "_val")))
    return tests, sorted(folder.glob("*_dev.csv"))


def _dev_file_for(test_file: Path) -> Path | None:
    subject = _subject_of(test_file)
    for candidate in (test_file.with_name(f"{subject}_dev.csv"),
                      test_file.parent.parent / "dev" / f"{subject}_dev.csv"):
        if candidate.exists() and candidate != test_file:
            return candidate
    return None


def load_multiple_choice(path, dev=None) -> MCSet:
    """A multiple-choice set from an MMLU folder or CSV file, or a JSONL file. `dev` (a file
    or folder in the same layouts) overrides where the few-shot examples come from."""
    path = Path(path)
    if not path.exists():
        raise EvalDataError(f"{path}: no such file or folder")
    if path.is_dir():
        tests, devs = _mmlu_files(path)
        if not tests:
            raise EvalDataError(f"{path}: no MMLU-layout CSV files (SUBJECT_test.csv) found")
        items = [item for f in tests for item in read_mmlu_csv(f)]
    elif path.suffix.lower() in (".jsonl", ".json"):
        items, devs = read_mc_jsonl(path), []
    else:
        items = read_mmlu_csv(path)
        dev_file = _dev_file_for(path)
        devs = [dev_file] if dev_file else []
    if dev is not None:
        dev_set = load_multiple_choice(dev)
        examples = dev_set.items
    else:
        examples = [item for f in devs for item in read_mmlu_csv(f)]
    by_subject: dict[str, list[MCItem]] = {}
    for item in examples:
        by_subject.setdefault(item.subject, []).append(item)
    return MCSet(items, by_subject, str(path))


def load_completion(path) -> MCSet:
    """A completion set (HellaSwag style) from JSONL: context, endings, label."""
    path = Path(path)
    if not path.exists():
        raise EvalDataError(f"{path}: no such file")
    items = []
    for number, rec in _jsonl_records(path):
        where = f"{path}:{number}"
        context = rec.get("context", rec.get("ctx"))
        if context is None and "ctx_a" in rec:
            context = (rec["ctx_a"] + " " + rec.get("ctx_b", "")).strip()
        if context is None or "endings" not in rec or "label" not in rec:
            raise EvalDataError(f"{where}: needs 'context' (or 'ctx'), 'endings' and 'label'")
        endings = _choices(rec["endings"], where, "endings")
        subject = rec.get("subject", rec.get("activity_label")) or _subject_of(path)
        items.append(MCItem(str(context), endings, _answer_index(rec["label"], endings, where),
                            str(subject), where))
    return MCSet(items, {}, str(path))
