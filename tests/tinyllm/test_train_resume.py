"""What --resume may change: flags it can't honour are refused by name; a longer --max-steps
goes on from the last learning rate instead of restarting the cosine; config.json records
every change a resume made."""

import json

import numpy as np
import pytest

from tests.tinyllm.tiny_runs import tiny_config, write_fox_corpus
from tinyllm.cli import main
from tinyllm.train import RunFolderError, Trainer, resume_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_fox_corpus(tmp_path_factory.mktemp("corpus"))


def config(out_dir, data, **kw):
    return tiny_config(out_dir, data, **{"max_steps": 6, "warmup_steps": 2, "lr": 1e-2,
                                         "min_lr": 1e-3, "eval_interval": 100, **kw})


def logged_lr(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["lr"] for r in lines if "lr" in r}


def test_extending_a_finished_run_continues_from_the_last_learning_rate(tmp_path, corpus):
    run = tmp_path / "run"
    Trainer(config(run, corpus), log=lambda m: None).run()
    messages = []
    resumed = Trainer(resume_config(run, {"max_steps": 12}), resume=True, log=messages.append)
    assert resumed.step == 6
    # The finished run ended at min_lr; the extension stays there instead of jumping back up.
    for step in range(6, 12):
        assert resumed.lr_at(step) == pytest.approx(1e-3), step
    resumed.run()
    lr = logged_lr(run)
    assert max(lr[s] for s in range(7, 13)) <= lr[6] + 1e-12
    assert any("does not restart the cosine" in m for m in messages)
    saved = json.loads((run / "config.json").read_text())
    assert saved["resumes"] == [{"step": 6, "changed": {"max_steps": [6, 12]}}]
    assert saved["train"]["max_steps"] == 12


def test_extending_an_unfinished_run_decays_smoothly_from_where_it_is(tmp_path, corpus):
    run = tmp_path / "run"
    first = Trainer(config(run, corpus, max_steps=10), log=lambda m: None)
    first.run(stop_at=4)
    before = first.lr_at(4)
    resumed = Trainer(resume_config(run, {"max_steps": 20}), resume=True, log=lambda m: None)
    rates = [resumed.lr_at(s) for s in range(4, 21)]
    assert rates[0] == pytest.approx(before)  # no jump at the resume
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # only down
    assert rates[-1] == pytest.approx(1e-3)
    # Resumed with its own step count, a run keeps its schedule (exact resume).
    run2 = tmp_path / "run2"
    Trainer(config(run2, corpus, max_steps=10), log=lambda m: None).run(stop_at=4)
    same = Trainer(resume_config(run2, {"max_steps": 10}), resume=True, log=lambda m: None)
    assert same.extensions == [] and same.lr_at(5) == first.lr_at(5)
    assert "resumes" not in json.loads((run2 / "config.json").read_text())


def test_flags_a_resume_cannot_honour_are_refused_by_name(tmp_path, corpus, capsys):
    run = tmp_path / "run"
    Trainer(config(run, corpus, max_steps=2), log=lambda m: None).run()
    with pytest.raises(RunFolderError, match=r"cannot change --lr 0.5 \(the run has 0.01\), "
                                             r"--n-layer 3 \(the run has 1\)"):
        resume_config(run, {"lr": 0.5, "n_layer": 3, "max_steps": 4})
    resume_config(run, {"lr": 1e-2, "n_layer": 1, "eval_interval": 1})  # same values: fine
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--batch-size", "8", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch-size 8 (the run has 2)" in err[0], err
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 1
    assert "not a run directory" in capsys.readouterr().err
    weights_before = (run / "checkpoint" / "model.safetensors").read_bytes()
    assert main(["train", "--resume", str(run), "--max-steps", "3", "--quiet"]) == 0
    assert (run / "checkpoint" / "model.safetensors").read_bytes() != weights_before
    assert not np.isnan(json.loads((run / "summary.json").read_text())["val_loss"])


def test_repeating_the_original_flags_on_a_resume_is_fine(tmp_path, corpus):
    run = tmp_path / "run"  # the tokenizer stops short of 290 on this corpus
    trainer = Trainer(config(run, corpus, max_steps=2), log=lambda m: None)
    assert trainer.model_cfg.vocab_size < 290
    trainer.run()
    cfg = resume_config(run, {"vocab_size": 290, "max_steps": 3, "out_dir": str(run)})
    assert cfg.max_steps == 3
    with pytest.raises(RunFolderError, match="--out"):
        resume_config(run, {"out_dir": str(tmp_path / "elsewhere")})


def test_best_checkpoint_and_early_stop(tmp_path, corpus):
    from tinyllm import checkpoint as ckpt

    # No learning (lr 0): every evaluation ties the first, so none is better; stop after 2.
    run = tmp_path / "flat"
    messages = []
    summary = Trainer(config(run, corpus, lr=0.0, min_lr=0.0, max_steps=10, eval_interval=1,
                             early_stop=2), log=messages.append).run()
    assert summary["steps"] == 3 and summary["stopped_early"] and summary["best_step"] == 1
    assert any("stopping early at step 3" in m for m in messages)
    best = ckpt.read_json(ckpt.checkpoint_dir(run, "checkpoint-best") / "state.json")
    assert best["step"] == 1

    # Learning: checkpoint-best holds the evaluation with the lowest val loss.
    run = tmp_path / "learn"
    summary = Trainer(config(run, corpus, max_steps=6, eval_interval=2), log=lambda m: None).run()
    losses = {r["step"]: r["val_loss"] for r in map(json.loads, (run / "metrics.jsonl")
                                                    .read_text().splitlines()) if "val_loss" in r}
    best_step = min(losses, key=losses.get)
    assert summary["best_step"] == best_step and not summary["stopped_early"]
    state = ckpt.read_json(run / "checkpoint-best" / "state.json")
    assert state["step"] == best_step and state["best"]["loss"] == losses[best_step]
    assert not (run / ".checkpoint-best.tmp").exists()
