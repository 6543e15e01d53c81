"""Accuracy with its chance line and a bootstrap interval, per subject and overall.

A small model's accuracy sits near chance, so a bare "27%" says nothing. For a set of items
(each right or wrong, each with k_i choices) this module reports:

- accuracy: per subject; *micro* (over all items: big subjects weigh more) and *macro* (the
  mean of the subjects' accuracies: every subject weighs the same, as MMLU reports);
- chance: the accuracy of guessing uniformly, the mean of 1/k_i over the same items (micro),
  or the mean of the subjects' chances (macro);
- centered accuracy: (accuracy - chance) / (1 - chance), 0 at chance and 1 when all right, so
  sets with different numbers of choices compare;
- a 95% bootstrap interval on each: the items are resampled with replacement `resamples` times
  (within each subject, so every subject keeps its size; with one subject this is the plain
  bootstrap), each statistic is recomputed on every resample, and the interval is the 2.5th
  and 97.5th percentiles of those values (the percentile method). Seeded: the same inputs give
  the same interval. Chance is recomputed on each resample too, so the centered interval is right
  when the number of choices varies.

For n items right with probability p the interval approaches p +- 1.96 sqrt(p (1 - p) / n)
(tests/tinyllm/test_eval_stats.py checks this, and that all-right gives exactly [1, 1]).
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy_report", "centered", "bootstrap_interval"]


def centered(accuracy, chance):
    """(accuracy - chance) / (1 - chance): 0 at chance, 1 when every answer is right."""
    return (np.asarray(accuracy) - chance) / (1.0 - np.asarray(chance))


def bootstrap_interval(values, level=0.95):
    """The percentile interval [lo, hi] of bootstrap replicates `values`."""
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100 - tail])
    return [float(lo), float(hi)]


def _summary(acc, chance, acc_reps, chance_reps, level):
    return {"accuracy": float(acc), "ci": bootstrap_interval(acc_reps, level),
            "chance": float(chance), "centered": float(centered(acc, chance)),
            "centered_ci": bootstrap_interval(centered(acc_reps, chance_reps), level)}


def _resampled_sums(rng, members, correct, chance_items, resamples, max_cells=1 << 22):
    """Sums of `correct` and `chance_items` over `resamples` resamples of `members` (drawn in
    blocks of rows so memory stays bounded whatever the set's size)."""
    rows = max(1, max_cells // len(members))
    right, chance = np.empty(resamples), np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        draws = members[rng.integers(0, len(members), size=(stop - start, len(members)))]
        right[start:stop] = correct[draws].sum(axis=1)
        chance[start:stop] = chance_items[draws].sum(axis=1)
    return right, chance


def accuracy_report(correct, subjects, n_choices, resamples: int = 2000, seed: int = 0,
                    level: float = 0.95) -> dict:
    """Per-subject, micro and macro accuracy, chance, centered accuracy and bootstrap intervals.

    correct: a truth value per item; subjects: a name per item; n_choices: the number of
    choices of each item. Returns a JSON-ready dict (see the module docstring)."""
    correct = np.asarray(correct, dtype=np.float64)
    chance_items = 1.0 / np.asarray(n_choices, dtype=np.float64)
    subjects = np.asarray(subjects, dtype=object)
    n = len(correct)
    if n == 0:
        raise ValueError("no items to score")
    if not (len(chance_items) == len(subjects) == n):
        raise ValueError("correct, subjects and n_choices must have one entry per item")
    rng = np.random.default_rng(seed)
    names = sorted(set(subjects.tolist()))
    total_right = np.zeros(resamples)
    total_chance = np.zeros(resamples)
    per_subject = {}
    subject_acc_reps, subject_chance_reps = [], []
    for name in names:
        members = np.flatnonzero(subjects == name)
        right_reps, chance_reps = _resampled_sums(rng, members, correct, chance_items, resamples)
        total_right += right_reps
        total_chance += chance_reps
        acc_reps, ch_reps = right_reps / len(members), chance_reps / len(members)
        subject_acc_reps.append(acc_reps)
        subject_chance_reps.append(ch_reps)
        per_subject[name] = {"n": int(len(members)),
                             **_summary(correct[members].mean(), chance_items[members].mean(),
                                        acc_reps, ch_reps, level)}
    micro = _summary(correct.mean(), chance_items.mean(), total_right / n, total_chance / n, level)
    macro_acc = np.mean([s["accuracy"] for s in per_subject.values()])
    macro_chance = np.mean([s["chance"] for s in per_subject.values()])
    macro = _summary(macro_acc, macro_chance, np.mean(subject_acc_reps, axis=0),
                     np.mean(subject_chance_reps, axis=0), level)
    return {"n": int(n), "correct": int(correct.sum()), "micro": micro, "macro": macro,
            "subjects": per_subject,
            "bootstrap": {"resamples": resamples, "seed": seed, "level": level,
                          "method": "percentile, items resampled within each subject"}}
