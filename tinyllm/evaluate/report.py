"""The report card: one page about one or more runs of a lineage (pre-train -> SFT -> DPO).

`write_report(runs, out_dir)` reads each run folder's config.json, summary.json, eval.json and
metrics.jsonl (and the prepared data's meta.json when the run has one) and writes

    report.json   everything gathered, numbers copied from the runs' own files unchanged
    report.md     the same as tables: data, tokenizer, model, then the stages side by side
                  (time, tokens, final metrics), then every evaluation with its interval
    report_loss.png       the loss curves of every stage (matplotlib, optional)
    report_accuracy.png   accuracies as bars with their 95% intervals against the chance line

A run's stage is read from its config.json: a "dpo" section means DPO, an "sft" or
"finetune" section fine-tuning, otherwise pre-training. Nothing is recomputed here: the report
only gathers, so its numbers are the runs' numbers (tests/tinyllm/test_eval_report.py checks).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tinyllm.evaluate.runs import RunError, read_results
from tinyllm.evaluate.tables import interval

__all__ = ["gather_run", "build_report", "write_report", "HEADLINE_METRICS"]

# Summary numbers shown as rows, in this order, when a run has them (any others follow).
HEADLINE_METRICS = (
    "val_bpb", "val_ppl", "val_loss", "test_bpb", "test_ppl", "test_loss",
    "task_accuracy", "val_task_accuracy", "exact_match", "reward_accuracy", "reward_margin",
    "preferred_rate", "start_preferred_rate",
)
_ACTIVITY = ("steps", "train_tokens", "tokens", "wall_s", "train_seconds", "tokens_per_s",
             "parameters",
             "trainable_parameters")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err})") from None


def _stage(config: dict) -> str:
    if "dpo" in config:
        return "dpo"
    if "sft" in config or "finetune" in config:
        return "sft"
    return "pretrain"


def _parent(config: dict):
    for section in (config, config.get("sft") or {}, config.get("finetune") or {},
                    config.get("dpo") or {}, config.get("train") or {}):
        for key in ("base_run", "base", "init_from", "parent"):
            if isinstance(section, dict) and section.get(key):
                return str(section[key])
    return None


def prepared_folder(run_dir: Path, depth: int = 4):
    """The prepared data folder a run (or the run it started from) trained on, or None."""
    run_dir = Path(run_dir)
    for _ in range(depth):
        candidates = [run_dir / "data"]
        config = _read_json(run_dir / "config.json") or {}
        data = (config.get("train") or {}).get("data")
        if data and not str(data).startswith("builtin:"):
            candidates.append(Path(data))
        for folder in candidates:
            if (folder / "train.bin").exists() and (folder / "tokenizer.json").exists():
                return folder
        parent = _parent(config)
        if not parent:
            return None
        run_dir = Path(parent)
    return None


def _curves(metrics_path: Path) -> dict:
    """Train and validation loss against step, from metrics.jsonl."""
    train, val = [], []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if isinstance(rec.get("loss"), int | float) and "step" in rec:
                train.append([rec["step"], rec["loss"]])
            if isinstance(rec.get("val_loss"), int | float) and "step" in rec:
                val.append([rec["step"], rec["val_loss"]])
    return {"train": train, "val": val}


def _evaluations(results: dict) -> dict:
    """The headline numbers of each entry of eval.json (per-item records left out)."""
    out = {}
    for key, r in results.items():
        if not isinstance(r, dict):
            continue
        if r.get("task") == "ppl":
            out[key] = {k: r.get(k) for k in ("task", "data", "split", "stride", "tokens", "bytes",
                                              "loss", "ppl", "bpb")}
        elif "micro" in r:
            out[key] = {"task": r.get("task"), "method": r.get("method"), "data": r.get("data"),
                        "n": r["n"], "micro": r["micro"], "macro": r["macro"],
                        "norm": r.get("norm"), "shots": r.get("shots")}
    return out


def gather_run(run_dir) -> dict:
    """Everything the report needs from one run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir}: not a run folder (no config.json)")
    config = _read_json(run_dir / "config.json") or {}
    summary = _read_json(run_dir / "summary.json")
    folder = prepared_folder(run_dir, depth=1)
    meta = _read_json(folder / "meta.json") if folder else None
    tokenizer = {}
    tok_json = _read_json(run_dir / "tokenizer.json") if (run_dir / "tokenizer.json").exists() \
        else None
    if isinstance(tok_json, dict):
        tokenizer = {"pattern": tok_json.get("pattern_name") or "custom pattern",
                     "merges": len(tok_json.get("merges", [])),
                     "special_tokens": sorted(tok_json.get("special_tokens") or {})}
    model = config.get("model", {})
    tokenizer["vocab_size"] = model.get("vocab_size")
    train_cfg = config.get("train") or config.get("sft") or config.get("finetune") \
        or config.get("dpo") or {}
    data = {"source": train_cfg.get("data")}
    if meta:
        data["counts"] = meta.get("counts")
    return {"run": str(run_dir), "name": run_dir.name, "stage": _stage(config),
            "parent": _parent(config), "complete": summary is not None,
            "summary": summary or {}, "model": model, "tokenizer": tokenizer, "data": data,
            "evaluations": _evaluations(read_results(run_dir / "eval.json")),
            "curves": _curves(run_dir / "metrics.jsonl")}


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in rows]
    return lines


def build_report(runs: list[dict]) -> str:
    """report.md's text for gathered runs (see `gather_run`)."""
    names = [f"{r['name']} ({r['stage']})" for r in runs]
    md = ["# tinyllm report card", ""]
    for r in runs:
        line = f"- **{r['name']}**: {r['stage']}, `{r['run']}`"
        if r["parent"]:
            line += f", from `{r['parent']}`"
        if not r["complete"]:
            line += " (no summary.json: not finished)"
        md.append(line)
    md += ["", "## Data, tokenizer, model", ""]
    rows = [["data", *[_fmt(r["data"].get("source")) for r in runs]]]
    for split in ("train", "val", "test"):
        if any((r["data"].get("counts") or {}).get(split) for r in runs):
            rows.append([f"{split} documents / tokens / bytes", *[
                " / ".join(_fmt(c.get(k)) for k in ("docs", "tokens", "bytes"))
                if (c := (r["data"].get("counts") or {}).get(split)) else "-" for r in runs]])
    rows.append(["tokenizer", *[f"vocab {_fmt(r['tokenizer'].get('vocab_size'))}, "
                                f"{_fmt(r['tokenizer'].get('pattern'))}" for r in runs]])
    rows.append(["model", *[f"{_fmt(r['model'].get('n_layer'))} layers x "
                            f"{_fmt(r['model'].get('n_embd'))} wide, "
                            f"{_fmt(r['model'].get('n_head'))} heads, "
                            f"block {_fmt(r['model'].get('block_size'))}" for r in runs]])
    md += _table(["", *names], rows)
    keys = [k for k in _ACTIVITY + HEADLINE_METRICS if any(k in r["summary"] for r in runs)]
    note = ("Each stage's `val_loss` is its own objective on its own held-out data: next-token "
            "loss (pre-training), answer-token loss (SFT), DPO loss (DPO).")
    keys += sorted({k for r in runs for k, v in r["summary"].items()
                    if k not in keys and isinstance(v, int | float) and not isinstance(v, bool)})
    md += ["", "## Stages side by side (from each run's summary.json)", "", note, ""]
    md += _table(["", *names], [[k, *[_fmt(r["summary"].get(k)) for r in runs]] for k in keys])
    eval_keys = list(dict.fromkeys(k for r in runs for k in r["evaluations"]))
    ppl = [k for k in eval_keys if any(r["evaluations"].get(k, {}).get("task") == "ppl"
                                       for r in runs)]
    acc = [k for k in eval_keys if k not in ppl]
    if ppl:
        md += ["", "## Perplexity (tinyllm eval --task ppl)", ""]
        rows = []
        for k in ppl:
            for label, field in (("bits per byte", "bpb"), ("perplexity", "ppl"),
                                 ("tokens scored", "tokens")):
                rows.append([f"{k} {label}", *[_fmt(r["evaluations"].get(k, {}).get(field))
                                              for r in runs]])
        md += _table(["", *names], rows)
    if acc:
        md += ["", "## Accuracy with 95% bootstrap intervals and the chance line", ""]
        rows = []
        for k in acc:
            cells = []
            for r in runs:
                e = r["evaluations"].get(k)
                cells.append("-" if e is None else
                             f"{e['micro']['accuracy']:.3f} {interval(e['micro']['ci'])}, "
                             f"chance {e['micro']['chance']:.3f}, n={e['n']}")
            rows.append([k, *cells])
        md += _table(["", *names], rows)
    md.append("")
    return "\n".join(md)


def _plot(runs, out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    with_curves = [r for r in runs if r["curves"]["train"] or r["curves"]["val"]]
    if with_curves:
        fig, axes = plt.subplots(1, len(with_curves), figsize=(4.5 * len(with_curves), 3.5),
                                 squeeze=False)
        for ax, r in zip(axes[0], with_curves):
            if r["curves"]["train"]:
                ax.plot(*zip(*r["curves"]["train"]), alpha=0.6, label="train")
            if r["curves"]["val"]:
                ax.plot(*zip(*r["curves"]["val"]), "o-", label="validation")
            ax.set_title(f"{r['name']} ({r['stage']})")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend()
        axes[0][0].set_ylabel("loss")
        fig.tight_layout()
        written.append(out_dir / "report_loss.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    bars = [(f"{r['name']}\n{k.split(':', 1)[-1][:28]}", e["micro"]) for r in runs
            for k, e in r["evaluations"].items() if "micro" in e]
    if bars:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(bars)), 3.8))
        for i, (_, m) in enumerate(bars):
            ax.bar(i, m["accuracy"], color="tab:blue", alpha=0.7)
            ax.errorbar(i, m["accuracy"], yerr=[[m["accuracy"] - m["ci"][0]],
                                                [m["ci"][1] - m["accuracy"]]], color="k",
                        capsize=4)
            ax.hlines(m["chance"], i - 0.45, i + 0.45, colors="tab:red", linestyles="--",
                      label="chance" if i == 0 else None)
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
        ax.set_ylabel("accuracy (95% interval)")
        ax.set_ylim(0, 1)
        ax.legend()
        fig.tight_layout()
        written.append(out_dir / "report_accuracy.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written


def write_report(run_dirs, out_dir=None, plots: bool = True) -> dict:
    """Write report.md, report.json (and plots, unless `plots` is False) for `run_dirs` into
    `out_dir` (default: the last run's folder); returns their paths."""
    from tinyllm.checkpoint import write_json
    from tinyllm.safetensors import atomic_write

    runs = [gather_run(d) for d in run_dirs]
    out_dir = Path(out_dir) if out_dir else Path(run_dirs[-1])
    out_dir.mkdir(parents=True, exist_ok=True)
    text = build_report(runs)
    paths = {"markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    atomic_write(paths["markdown"], lambda f: f.write(text), mode="w")
    write_json(paths["json"], {"runs": runs})
    for path in _plot(runs, out_dir) if plots else []:
        paths[path.stem] = path
    return paths
