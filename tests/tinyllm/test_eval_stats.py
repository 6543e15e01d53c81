"""Accuracy, chance, centered accuracy and bootstrap intervals against closed forms."""

import math

import numpy as np
import pytest

from tinyllm.evaluate.stats import accuracy_report, centered


def test_all_right_gives_exactly_one_and_all_wrong_zero():
    r = accuracy_report([1] * 30, ["s"] * 30, [4] * 30, resamples=200)
    assert r["micro"]["ci"] == [1.0, 1.0] and r["micro"]["centered_ci"] == [1.0, 1.0]
    assert r["micro"]["chance"] == 0.25 and r["micro"]["centered"] == 1.0
    r = accuracy_report([0] * 30, ["s"] * 30, [4] * 30, resamples=200)
    assert r["micro"]["ci"] == [0.0, 0.0]
    assert r["micro"]["centered"] == pytest.approx(-1 / 3)


def test_centered_accuracy():
    assert centered(0.25, 0.25) == 0.0
    assert centered(1.0, 0.5) == 1.0
    assert centered(0.625, 0.25) == pytest.approx(0.5)


def test_interval_matches_the_normal_approximation_for_large_n():
    n, right = 10_000, 3_000
    correct = np.zeros(n)
    correct[:right] = 1
    r = accuracy_report(correct, ["s"] * n, [4] * n, resamples=2000, seed=1)
    p = right / n
    half = 1.96 * math.sqrt(p * (1 - p) / n)  # 0.00898
    lo, hi = r["micro"]["ci"]
    assert lo == pytest.approx(p - half, abs=0.0012) and hi == pytest.approx(p + half, abs=0.0012)
    # centered accuracy is a linear map of accuracy here (fixed chance): its interval maps too
    clo, chi = r["micro"]["centered_ci"]
    assert clo == pytest.approx((lo - 0.25) / 0.75, abs=1e-12)
    assert chi == pytest.approx((hi - 0.25) / 0.75, abs=1e-12)


def test_micro_macro_and_chance_with_mixed_choice_counts():
    # subject a: 2 items, 4 choices, both right; subject b: 4 items, 2 choices, 1 right
    correct = [1, 1, 1, 0, 0, 0]
    subjects = ["a", "a", "b", "b", "b", "b"]
    choices = [4, 4, 2, 2, 2, 2]
    r = accuracy_report(correct, subjects, choices, resamples=300, seed=0)
    assert r["micro"]["accuracy"] == pytest.approx(3 / 6)
    assert r["macro"]["accuracy"] == pytest.approx((1.0 + 0.25) / 2)
    assert r["micro"]["chance"] == pytest.approx((2 * 0.25 + 4 * 0.5) / 6)
    assert r["macro"]["chance"] == pytest.approx((0.25 + 0.5) / 2)
    assert r["subjects"]["a"]["ci"] == [1.0, 1.0]
    assert r["subjects"]["b"]["n"] == 4
    lo, hi = r["macro"]["ci"]
    assert lo <= r["macro"]["accuracy"] <= hi


def test_seeded_and_reproducible():
    rng = np.random.default_rng(0)
    correct = rng.random(500) < 0.4
    a = accuracy_report(correct, ["s"] * 500, [4] * 500, seed=7)
    b = accuracy_report(correct, ["s"] * 500, [4] * 500, seed=7)
    c = accuracy_report(correct, ["s"] * 500, [4] * 500, seed=8)
    assert a == b and a["micro"]["ci"] != c["micro"]["ci"]


def test_bad_input():
    with pytest.raises(ValueError, match="no items"):
        accuracy_report([], [], [])
