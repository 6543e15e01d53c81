"""Plots of a run (matplotlib, an optional extra: `pip install '.[plot]'`).

Training draws RUN/loss.png at the end when matplotlib is there; `tinyllm plot RUN` draws it
later (after installing the extra, or while a run is still going).
"""

from __future__ import annotations

import json
from pathlib import Path

MISSING_MATPLOTLIB = ("matplotlib is not installed, so no loss.png: install the plot extra "
                      "(pip install '.[plot]'), then draw it with: tinyllm plot RUN")


# Evaluation losses a run records, and their labels: a run without a validation split
# evaluates on its training split and says so in the key.
EVALUATIONS = {"val_loss": "validation", "train_eval_loss": "training split (no validation)"}


def read_losses(metrics_path):
    """(train, evaluations): train is a list of (step, loss); evaluations maps each label of
    EVALUATIONS found to its list of (step, loss). From metrics.jsonl; a line that is not JSON
    is refused naming the file and line (a last line cut short by a crash is skipped)."""
    path = Path(metrics_path)
    lines = path.read_text().splitlines()
    train, evaluations = [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a run killed mid-write leaves a partial last line
                break
            raise ValueError(f"{path}:{number}: not a JSON line") from None
        if not isinstance(rec, dict) or "step" not in rec:
            continue
        if "loss" in rec:
            train.append((rec["step"], rec["loss"]))
        for key, label in EVALUATIONS.items():
            if key in rec:
                evaluations.setdefault(label, []).append((rec["step"], rec[key]))
    return train, evaluations


def plot_losses(metrics_path, out_path, strict=False) -> Path | None:
    """Train and evaluation loss against step, from metrics.jsonl, as a PNG.
    Returns the path, or None when matplotlib is not installed (`strict`: raise RuntimeError
    saying how to install it)."""
    # Read first: a damaged metrics file is worth knowing about with or without matplotlib.
    train, evaluations = read_losses(metrics_path)
    if strict and not (train or evaluations):
        raise ValueError(f"{metrics_path}: no losses recorded yet")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if strict:
            raise RuntimeError(MISSING_MATPLOTLIB) from None
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", alpha=0.6)
    for label, points in evaluations.items():
        ax.plot(*zip(*points), "o-", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title("tinyllm training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)
