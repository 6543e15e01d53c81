"""Built-in question/answer tasks, generated with a seed (no download), graded by exact match.

A tiny model pre-trained on Python documentation knows no facts worth quizzing, but it can learn
a small algorithm from examples, and then answer questions it has never seen. Each task is such an
algorithm over short lists of digits (the tokenizer writes each digit as its own token, so the
model sees every item):

    reverse   "Reverse the list: 3 8 1 5"        -> "5 1 8 3"
    sort      "Sort the list: 3 8 1 5"           -> "1 3 5 8"
    add       "What is 23 + 45?"                 -> "68"
    mix       all three, in equal shares

Train, validation and test questions never overlap: an item's split is decided by a hash of
the question itself (1 in 8 goes to test, 1 in 8 to validation), not by its position in a list,
so no seed or size can move a test question into training. The `--data builtin:NAME` of
`tinyllm finetune` reads the train split, and measures on validation (loss) and test (exact match).

Each item also carries a plausible wrong answer (`QAItem.wrong`: the list unchanged, sorted the
wrong way, a sum off by a little) for building preference pairs: chosen = answer, rejected = wrong.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from tinyllm.align.sft_data import Example

SPLITS = ("train", "val", "test")
#: default number of items per split (add has only ~6,000 distinct training questions)
SIZES = {"train": 20000, "val": 200, "test": 200}
TRAIN_CAP = {"add": 5000}


@dataclass(frozen=True)
class QAItem:
    task: str
    question: str
    answer: str
    wrong: str  # a plausible mistake, for preference data

    def messages(self, answer=None):
        return [{"role": "user", "content": self.question},
                {"role": "assistant", "content": self.answer if answer is None else answer}]


def _digits(rng, low=3, high=5):
    return [int(d) for d in rng.integers(0, 10, size=int(rng.integers(low, high + 1)))]


def _spaced(values):
    return " ".join(str(v) for v in values)


def make_reverse(rng):
    xs = _digits(rng)
    if xs == xs[::-1]:  # a palindrome's "mistake" would be right; draw a non-palindrome
        xs[0] = (xs[-1] + 1) % 10
    return QAItem("reverse", f"Reverse the list: {_spaced(xs)}", _spaced(xs[::-1]), _spaced(xs))


def make_sort(rng):
    xs = _digits(rng)
    if len(set(xs)) == 1:
        xs[0] = (xs[0] + 1) % 10
    up, down = sorted(xs), sorted(xs, reverse=True)
    return QAItem("sort", f"Sort the list: {_spaced(xs)}", _spaced(up), _spaced(down))


def make_add(rng):
    a, b = (int(v) for v in rng.integers(10, 100, size=2))
    off = int(rng.choice([-10, -1, 1, 10]))
    return QAItem("add", f"What is {a} + {b}?", str(a + b), str(a + b + off))


TASKS = {"reverse": (make_reverse,), "sort": (make_sort,), "add": (make_add,),
         "mix": (make_reverse, make_sort, make_add)}


def split_of(question: str) -> str:
    """The split a question belongs to, from a hash of its text (stable across runs)."""
    bucket = zlib.crc32(question.encode("utf-8")) % 8
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def generate_items(name, split="train", n=None, seed=0):
    """`n` distinct items of task `name` from `split` (default size: SIZES[split])."""
    if name not in TASKS:
        raise ValueError(f"unknown built-in data set {name!r}; choose from "
                         + ", ".join(f"builtin:{t}" for t in TASKS))
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n is None:
        n = min(SIZES[split], TRAIN_CAP.get(name, SIZES[split]))
    makers = TASKS[name]
    # each split draws from its own stream, so asking for more train items never changes test
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    items, seen = [], set()
    for attempt in range(200 * n + 1000):
        if len(items) == n:
            break
        item = makers[attempt % len(makers)](rng)
        if item.question not in seen and split_of(item.question) == split:
            seen.add(item.question)
            items.append(item)
    if len(items) < n:
        raise ValueError(f"builtin:{name} has fewer than {n} distinct {split} questions")
    return items


def builtin_examples(name, split="train", n=None, seed=0):
    """The items of `generate_items` as SFT examples."""
    return [Example(item.messages(), f"builtin:{name}:{split}:{i}")
            for i, item in enumerate(generate_items(name, split, n, seed))]
