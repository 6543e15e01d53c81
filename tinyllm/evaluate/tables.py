"""Plain-text tables of evaluation results, for the terminal and for report.md."""

from __future__ import annotations

__all__ = ["format_accuracy_table", "format_ppl_table", "interval"]


def interval(ci, digits=3) -> str:
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _accuracy_row(name, n, s, width):
    return (f"{name:<{width}} {n:>6}  {s['accuracy']:>8.3f}  {interval(s['ci']):>16}  "
            f"{s['chance']:>6.3f}  {s['centered']:>8.3f}  {interval(s['centered_ci']):>17}")


def format_accuracy_table(stats: dict, max_subjects: int = 60) -> str:
    """Per-subject rows (the first `max_subjects`), then micro and macro averages."""
    how = stats.get("method", "")
    if stats.get("norm") and how == "loglik":
        how += f", normalised per {stats['norm']}" if stats["norm"] != "none" else ", summed"
    if stats.get("shots"):
        how += f", {stats['shots']}-shot"
    lines = [f"{stats.get('task', '')} on {stats.get('data', '')} ({how}): {stats['n']} items, "
             f"{stats['correct']} right"]
    subjects = stats["subjects"]
    width = max([len("subject")] + [len(s) for s in list(subjects)[:max_subjects]] + [5])
    lines.append(f"{'subject':<{width}} {'n':>6}  {'accuracy':>8}  {'95% interval':>16}  "
                 f"{'chance':>6}  {'centered':>8}  {'centered interval':>17}")
    for name, s in list(subjects.items())[:max_subjects]:
        lines.append(_accuracy_row(name, s["n"], s, width))
    if len(subjects) > max_subjects:
        lines.append(f"... {len(subjects) - max_subjects} more subjects in the JSON file")
    lines.append("-" * len(lines[1]))
    lines.append(_accuracy_row("micro", stats["n"], stats["micro"], width))
    lines.append(_accuracy_row("macro", stats["n"], stats["macro"], width))
    notes = []
    if "accuracy_by_norm" in stats:
        notes.append("accuracy by normalisation: " + ", ".join(
            f"{k} {v:.3f}" for k, v in stats["accuracy_by_norm"].items()))
    if stats.get("truncated"):
        notes.append(f"{stats['truncated']} prompts cut to fit the model's context")
    if stats.get("unanswered"):
        notes.append(f"{stats['unanswered']} generations named no choice (counted wrong)")
    if stats.get("dropped_seen_in_training"):
        notes.append(f"{stats['dropped_seen_in_training']} items dropped: their answer is in "
                     "the run's training text")
    return "\n".join(lines + notes)


def format_ppl_table(r: dict) -> str:
    bpb = "n/a" if r["bpb"] is None else f"{r['bpb']:.4f}"
    how = ("non-overlapping windows" if r["stride"] == r["block_size"]
           else f"sliding window, stride {r['stride']}")
    sample = " (a seeded sample of windows)" if r["sampled"] else ""
    return (f"perplexity on {r['data']} ({how}{sample})\n"
            f"{'tokens scored':<16}{r['tokens']:>12,}\n"
            f"{'bytes scored':<16}{(r['bytes'] or 0):>12,}\n"
            f"{'loss (nats/tok)':<16}{r['loss']:>12.4f}\n"
            f"{'perplexity':<16}{r['ppl']:>12.2f}\n"
            f"{'bits per byte':<16}{bpb:>12}")
