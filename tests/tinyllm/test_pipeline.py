"""`tinyllm pipeline` end to end: every stage runs, its metric moves the right way, and a second
run skips what is done. The smoke version is shrunk to seconds; the real tiny preset is slow."""

import json

import pytest

from tinyllm.pipeline import run_pipeline

SMOKE = {
    "pretrain": {"max_steps": 40, "eval_interval": 40, "batch_size": 8, "n_layer": 1,
                 "n_embd": 32, "eval_tokens": 1024},
    "sft": {"max_steps": 12, "eval_examples": 8, "eval_interval": 6, "batch_size": 8,
            "answer_tokens": 12},
    "dpo": {"max_steps": 8, "train_pairs": 64, "test_pairs": 16, "sample_pairs": 4,
            "eval_interval": 4, "batch_size": 4},
    "eval": {"limit": 12, "resamples": 100, "ppl_max_tokens": 1024},
}


def check_outputs(out, result):
    assert result["all_ok"], json.dumps(result["checks"], indent=1)
    for stage in ("pretrain", "sft", "dpo"):
        summary = json.loads((out / stage / "summary.json").read_text())
        evals = json.loads((out / stage / "eval.json").read_text())
        nextline = evals["complete:builtin:nextline"]
        assert nextline["micro"]["chance"] == 0.25
        assert nextline["micro"]["ci"][0] <= nextline["micro"]["accuracy"]
        assert evals["ppl:builtin:pydoc:heldout"]["bytes"] > 0
        report = json.loads((out / "report.json").read_text())
        assert [r["summary"] for r in report["runs"] if r["name"] == stage] == [summary]
    assert "## Pipeline" in (out / "report.md").read_text()


def test_pipeline_smoke_and_resume(tmp_path):
    out = tmp_path / "pipe"
    result = run_pipeline(out, preset="tiny", progress=False, overrides=SMOKE)
    check_outputs(out, result)
    stamps = {s: (out / s / "summary.json").stat().st_mtime_ns for s in ("pretrain", "sft", "dpo")}
    again = run_pipeline(out, preset="tiny", progress=False, overrides=SMOKE)
    assert again["all_ok"]
    assert stamps == {s: (out / s / "summary.json").stat().st_mtime_ns for s in stamps}
    assert again["stage_seconds"]["pre-train"] < 1.0


@pytest.mark.slow
def test_pipeline_tiny_preset(tmp_path):
    out = tmp_path / "pipe"
    check_outputs(out, run_pipeline(out, preset="tiny", progress=False))
