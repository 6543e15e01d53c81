"""The report card gathers the runs' own numbers: they must come out unchanged."""

import json

import pytest

from tinyllm.cli import main
from tinyllm.evaluate.report import write_report


def make_run(folder, config, summary, evals=None, metrics=()):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if evals:
        (folder / "eval.json").write_text(json.dumps(evals))
    return folder


MODEL = {"vocab_size": 512, "block_size": 64, "n_layer": 2, "n_head": 2, "n_embd": 64}


@pytest.fixture
def lineage(tmp_path):
    acc = {"task": "complete", "method": "loglik", "data": "builtin:nextline", "n": 250,
           "micro": {"accuracy": 0.316, "ci": [0.26, 0.372], "chance": 0.25, "centered": 0.088,
                     "centered_ci": [0.013, 0.163]},
           "macro": {"accuracy": 0.3, "ci": [0.2, 0.4], "chance": 0.25, "centered": 0.0667,
                     "centered_ci": [-0.06, 0.2]}, "items": [{"pred": 1}]}
    base = make_run(tmp_path / "pretrain", {"model": MODEL, "train": {"data": "builtin:pydoc"}},
                    {"val_bpb": 1.9243760444187155, "val_ppl": 80.99769144454196, "steps": 501,
                     "train_tokens": 1026048, "wall_s": 336.46890667699995},
                    {"complete:builtin:nextline": acc,
                     "ppl:builtin:pydoc:val": {"task": "ppl", "data": "builtin:pydoc",
                                               "bpb": 1.9348, "ppl": 83.0, "loss": 4.4188,
                                               "tokens": 7076, "bytes": 23315}},
                    [{"step": 1, "loss": 6.2}, {"step": 2, "loss": 5.9, "val_loss": 6.0}])
    sft = make_run(tmp_path / "sft", {"model": MODEL, "sft": {"base_run": str(base)}},
                   {"task_accuracy": 0.62, "val_loss": 1.25, "steps": 40, "wall_s": 12.5})
    dpo = make_run(tmp_path / "dpo", {"model": MODEL, "dpo": {"base_run": str(sft)},
                                      "base_run": str(sft)},
                   {"reward_accuracy": 0.875, "reward_margin": 0.4321, "steps": 30},
                   metrics=[{"step": 1, "loss": 0.69}])
    return base, sft, dpo


def test_report_numbers_equal_the_runs_summaries(lineage, tmp_path):
    paths = write_report(lineage, tmp_path / "out")
    report = json.loads(paths["json"].read_text())
    for run_dir, gathered in zip(lineage, report["runs"]):
        summary = json.loads((run_dir / "summary.json").read_text())
        assert gathered["summary"] == summary
    stages = [r["stage"] for r in report["runs"]]
    assert stages == ["pretrain", "sft", "dpo"]
    assert report["runs"][2]["parent"] == str(lineage[1])
    base_evals = json.loads((lineage[0] / "eval.json").read_text())
    got = report["runs"][0]["evaluations"]["complete:builtin:nextline"]
    assert got["micro"] == base_evals["complete:builtin:nextline"]["micro"]
    assert "items" not in got
    md = paths["markdown"].read_text()
    assert "| val_bpb | 1.924 | - | - |" in md
    assert "| reward_accuracy | - | - | 0.875 |" in md
    assert "| task_accuracy | - | 0.62 | - |" in md
    assert "0.316 [0.260, 0.372], chance 0.250, n=250" in md
    assert report["runs"][0]["curves"]["val"] == [[2, 6.0]]


def test_report_command_and_plots(lineage, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["report", *map(str, lineage), "--out", str(tmp_path / "r")]) == 0
    assert "# tinyllm report card" in capsys.readouterr().out
    assert (tmp_path / "r" / "report_loss.png").exists()
    assert (tmp_path / "r" / "report_accuracy.png").exists()


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "not a run folder" in capsys.readouterr().err
