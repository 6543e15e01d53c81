"""Reading a run folder (any stage: pre-training, fine-tuning, DPO) for evaluation, and writing
its `eval.json`.

A run folder holds config.json, tokenizer.json and checkpoint/ (see tinyllm/checkpoint.py);
`load_run` gives the model in evaluation mode and its tokenizer, or one line saying what is
missing. `record_result` merges one evaluation into RUN/eval.json (written atomically), keyed by
task and data, so `tinyllm report` finds every evaluation of the run.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_run", "record_result", "read_results", "RunError"]


class RunError(ValueError):
    """A folder that is not a usable run."""


def load_run(run_dir):
    """(model, tokenizer, config dict) of the run in `run_dir`."""
    from tinyllm.checkpoint import checkpoint_dir, load_model, read_json
    from tinyllm.tokenizer import BPETokenizer

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    for needed in ("config.json", "tokenizer.json"):
        if not (run_dir / needed).exists():
            raise RunError(f"{run_dir}: not a run folder (no {needed})")
    config = read_json(run_dir / "config.json")
    if not isinstance(config, dict) or "model" not in config:
        raise RunError(f"{run_dir / 'config.json'}: has no 'model' section")
    model = load_model(config["model"], checkpoint_dir(run_dir))
    model.eval()
    return model, BPETokenizer.load(run_dir / "tokenizer.json"), config


def read_results(path) -> dict:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err})") from None
    return data if isinstance(data, dict) else {}


def record_result(path, key: str, result: dict) -> Path:
    """Merge `result` under `key` into the JSON file at `path` (atomically replaced)."""
    from tinyllm.checkpoint import write_json

    path = Path(path)
    results = read_results(path)
    results[key] = result
    write_json(path, results)
    return path
