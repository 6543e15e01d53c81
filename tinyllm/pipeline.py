"""`tinyllm pipeline`: the six phases of building a language model, end to end, in one command.

    OUT/data/       1-2. clean, filter, de-duplicate and split the built-in corpus; train the
                         tokenizer on the training split; tokenize (tinyllm.data.prepare)
    OUT/pretrain/   3.   pre-train a GPT on it (tinyllm.train)
    OUT/sft/        4.   fine-tune it on the built-in Q&A task (tinyllm.align.sft)
    OUT/dpo/        5.   align it with DPO on the built-in preference pairs (tinyllm.align.dpo_train)
                    6.   evaluate every stage: perplexity and bits per byte on the corpus's held-out
                         documents, the built-in next-line benchmark with its interval and chance
                         line (each run's eval.json)
    OUT/report.md   the report card of the three stages side by side (also report.json, plots),
                    rewritten after every stage; OUT/pipeline.json: stage times and the checks.

Every stage is a folder of its own and resumable: a finished stage (its summary.json, or the
prepared folder's meta.json) is skipped when the pipeline runs again; an interrupted one resumes
from its last checkpoint. The checks say whether each stage's metric moved the right way:
pre-training ends below the loss of guessing uniformly, fine-tuning lowers its validation loss and
does not lower its exact match, DPO ranks more held-out pairs right than not and its loss falls
below ln 2 (its value at the start, when the policy equals the reference).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

__all__ = ["PIPELINE_PRESETS", "run_pipeline", "stage_checks"]

# Per preset: the pre-training preset, and the settings of each later stage.
PIPELINE_PRESETS = {
    "small": {
        "pretrain": {"preset": "small"},
        "sft": {"data": "builtin:reverse", "eval_examples": 100},  # finetune's default steps
        "dpo": {"data": "builtin:brackets", "max_steps": 100, "train_pairs": 1000,
                "test_pairs": 100, "sample_pairs": 50, "eval_interval": 50},
        "eval": {"limit": None, "resamples": 2000},
    },
    "tiny": {
        "pretrain": {"preset": "tiny", "max_steps": 300},
        "sft": {"data": "builtin:reverse", "max_steps": 60, "eval_examples": 30,
                "batch_size": 16, "eval_interval": 30},
        "dpo": {"data": "builtin:brackets", "max_steps": 30, "train_pairs": 300,
                "test_pairs": 40, "sample_pairs": 10, "eval_interval": 15, "lr": 1e-3},
        "eval": {"limit": 80, "resamples": 500},
    },
}


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _merged(preset: str, overrides: dict | None):
    if preset not in PIPELINE_PRESETS:
        raise ValueError(f"unknown pipeline preset {preset!r}; choose one of "
                         f"{sorted(PIPELINE_PRESETS)}")
    settings = {stage: dict(values) for stage, values in PIPELINE_PRESETS[preset].items()}
    for stage, values in (overrides or {}).items():
        settings.setdefault(stage, {}).update(values)
    return settings


# ---- the stages ---------------------------------------------------------------------------------
def _stage_data(out: Path, settings, progress):
    from tinyllm.data.prepare import prepare
    from tinyllm.train import PRESETS

    folder = out / "data"
    if (folder / "meta.json").exists() and (folder / "train.bin").exists():
        return folder, None
    model_over, _ = PRESETS[settings["pretrain"]["preset"]]
    vocab = settings["pretrain"].get("vocab_size", model_over["vocab_size"])
    result = prepare("builtin:pydoc", folder, vocab_size=vocab, progress=progress)
    return folder, result.get("timings")


def _has_checkpoint(run: Path) -> bool:
    return (run / "checkpoint" / "state.json").exists() or \
        (run / ".checkpoint.old" / "state.json").exists()


def _stage_pretrain(out: Path, data: Path, settings, progress):
    from tinyllm.checkpoint import read_json
    from tinyllm.train import PRESETS, TrainConfig, Trainer

    run = out / "pretrain"
    if (run / "summary.json").exists():
        return run
    if (run / "config.json").exists() and _has_checkpoint(run):
        saved = read_json(run / "config.json")["train"]
        cfg = TrainConfig.from_dict({**saved, "out_dir": str(run), "progress": progress})
        return Path(Trainer(cfg, resume=True).run()["run_dir"])
    over = dict(settings["pretrain"])
    model_over, train_over = PRESETS[over.pop("preset")]
    model = {**model_over, **{k: over.pop(k) for k in list(over) if k in model_over}}
    train = {**train_over, **over}
    if "max_steps" in over and "max_minutes" not in over:
        train["max_minutes"] = None  # an explicit step count wins over a time budget
    cfg = TrainConfig(**{**train, "out_dir": str(run), "data": str(data),
                         "progress": progress, "model": model})
    Trainer(cfg).run()
    return run


def _stage_sft(out: Path, base: Path, settings, progress):
    from tinyllm.align.sft import FinetuneConfig, FineTuner
    from tinyllm.checkpoint import read_json

    run = out / "sft"
    if (run / "summary.json").exists():
        return run
    if (run / "config.json").exists() and _has_checkpoint(run):
        saved = read_json(run / "config.json")["finetune"]
        FineTuner(FinetuneConfig.from_dict({**saved, "out_dir": str(run), "progress": progress}),
                  resume=True).run()
        return run
    FineTuner(FinetuneConfig(base=str(base), out_dir=str(run), progress=progress,
                             **settings["sft"])).run()
    return run


def _stage_dpo(out: Path, base: Path, settings, progress):
    from tinyllm.align.dpo_train import DPOConfig, DPOTrainer
    from tinyllm.checkpoint import read_json

    run = out / "dpo"
    if (run / "summary.json").exists():
        return run
    if (run / "config.json").exists() and _has_checkpoint(run):
        saved = read_json(run / "config.json")["dpo"]
        DPOTrainer(DPOConfig.from_dict({**saved, "out_dir": str(run), "progress": progress}),
                   resume=True).run()
        return run
    DPOTrainer(DPOConfig(base_run=str(base), out_dir=str(run), progress=progress,
                         **settings["dpo"])).run()
    return run


def _stage_eval(run: Path, training_text: str | None, settings, progress):
    """Held-out perplexity and the built-in next-line benchmark, into RUN/eval.json."""
    from tinyllm.evaluate.builtin_sets import drop_seen, load_builtin
    from tinyllm.evaluate.multiple_choice import evaluate_completion
    from tinyllm.evaluate.ppl_task import evaluate_perplexity
    from tinyllm.evaluate.runs import load_run, read_results, record_result
    from tinyllm.evaluate.scoring import LMScorer

    path = run / "eval.json"
    done = read_results(path)
    ppl_key, mc_key = "ppl:builtin:pydoc:heldout", "complete:builtin:nextline"
    if ppl_key in done and mc_key in done:
        return done
    model, tok, _ = load_run(run)
    if ppl_key not in done:
        result = evaluate_perplexity(model, tok, "builtin:pydoc", split="heldout",
                                     max_tokens=settings["eval"].get("ppl_max_tokens"),
                                     progress=progress)
        record_result(path, ppl_key, {**result, "run": str(run)})
    if mc_key not in done:
        mcset = load_builtin("nextline")
        dropped = None
        if training_text is not None:
            mcset, dropped = drop_seen(mcset, training_text)
        if settings["eval"].get("limit"):
            mcset.items = mcset.items[: settings["eval"]["limit"]]
        stats, records = evaluate_completion(LMScorer(model, tok), mcset,
                                             resamples=settings["eval"]["resamples"],
                                             progress=progress)
        stats["dropped_seen_in_training"] = dropped
        record_result(path, mc_key, {**stats, "items": records, "run": str(run)})
    return read_results(path)


# ---- checks ---------------------------------------------------------------------------------------
def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_checks(out: Path) -> dict:
    """Whether each stage's metric moved the right way (see the module docstring)."""
    out = Path(out)
    checks = {}
    pre = json.loads((out / "pretrain" / "summary.json").read_text())
    vocab = json.loads((out / "pretrain" / "config.json").read_text())["model"]["vocab_size"]
    checks["pretrain: val loss below uniform guessing (ln V)"] = {
        "value": pre["val_loss"], "bound": math.log(vocab), "ok": pre["val_loss"] < math.log(vocab)}
    sft = json.loads((out / "sft" / "summary.json").read_text())
    first_val = next(m["val_loss"] for m in _metrics(out / "sft") if "val_loss" in m)
    checks["sft: held-out loss fell"] = {"value": sft["val_loss"], "bound": first_val,
                                         "ok": sft["val_loss"] < first_val}
    checks["sft: exact match did not fall"] = {
        "value": sft["exact_match"], "bound": sft["base_exact_match"],
        "ok": sft["exact_match"] >= sft["base_exact_match"]}
    dpo = json.loads((out / "dpo" / "summary.json").read_text())
    checks["dpo: loss below ln 2"] = {"value": dpo["val_loss"], "bound": math.log(2),
                                      "ok": dpo["val_loss"] < math.log(2)}
    checks["dpo: reward accuracy above one half"] = {
        "value": dpo["reward_accuracy"], "bound": 0.5, "ok": dpo["reward_accuracy"] > 0.5}
    evals = json.loads((out / "pretrain" / "eval.json").read_text())
    bpb = evals["ppl:builtin:pydoc:heldout"]["bpb"]
    checks["eval: held-out bits per byte below 8 (raw bytes)"] = {"value": bpb, "bound": 8.0,
                                                                  "ok": bpb < 8.0}
    return checks


# ---- the whole ----------------------------------------------------------------------------------
def run_pipeline(out="runs/pipeline", preset: str = "small", progress: bool = True,
                 overrides: dict | None = None) -> dict:
    """Run (or resume) every stage under `out`; returns pipeline.json's content."""
    from tinyllm.checkpoint import write_json
    from tinyllm.evaluate.cli import training_text
    from tinyllm.evaluate.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = _merged(preset, overrides)
    times = {}
    runs = []

    def timed(name, fn, *args):
        _log(f"== pipeline: {name}")
        start = time.perf_counter()
        value = fn(*args)
        times[name] = time.perf_counter() - start
        return value

    data, _ = timed("prepare data and tokenizer", _stage_data, out, settings, progress)
    steps = (("pre-train", _stage_pretrain, data), ("fine-tune (SFT)", _stage_sft, None),
             ("align (DPO)", _stage_dpo, None))
    base = None
    for name, fn, first_arg in steps:
        run = timed(name, fn, out, first_arg if first_arg is not None else base, settings,
                    progress)
        runs.append(run)
        base = run
        write_report(runs, out, plots=False)  # plots once, at the end
    text = training_text(runs[0])
    for run in runs:
        timed(f"evaluate {run.name}", _stage_eval, run, text, settings, progress)
    paths = write_report(runs, out)
    checks = stage_checks(out)
    result = {"preset": preset, "settings": settings, "stage_seconds": times,
              "total_seconds": sum(times.values()), "runs": [str(r) for r in runs],
              "checks": checks, "all_ok": all(c["ok"] for c in checks.values()),
              "report": str(paths["markdown"])}
    write_json(out / "pipeline.json", result)
    with open(paths["markdown"], "a") as f:
        f.write(_checks_markdown(result))
    return result


def _checks_markdown(result) -> str:
    lines = ["", "## Pipeline", "",
             f"Preset `{result['preset']}`; seconds this invocation spent per stage (a skipped, "
             "already finished stage takes about 0):", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in result["stage_seconds"].items()]
    lines += ["", "| check | value | bound | ok |", "|---|---|---|---|"]
    lines += [f"| {name} | {c['value']:.4g} | {c['bound']:.4g} | {'yes' if c['ok'] else 'NO'} |"
              for name, c in result["checks"].items()]
    return "\n".join(lines) + "\n"
