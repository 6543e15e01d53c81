"""Runs never replace or mix with each other, and prepared data is reused only when it was made
from what the run asks for (sources, vocabulary size or tokenizer)."""

import json

import numpy as np
import pytest

from tinyllm import checkpoint as ckpt
from tinyllm.cli import main
from tinyllm.safetensors import load_file
from tinyllm.train import RunFolderError, TrainConfig, Trainer

MODEL = dict(vocab_size=290, block_size=16, n_layer=1, n_head=2, n_embd=16)


def corpus(folder, word, n=20):
    folder.mkdir()
    for i in range(n):
        (folder / f"doc{i:02d}.txt").write_text(f"Document {i} about the {word}: {word} {i}. " * 6)
    return str(folder)


def config(out_dir, data, **kw):
    base = dict(out_dir=None if out_dir is None else str(out_dir), data=data, batch_size=2,
                max_steps=2, eval_interval=2, eval_tokens=64, sample_tokens=4, progress=False,
                model=dict(MODEL))
    return TrainConfig(**{**base, **kw})


def sources(run_dir):
    meta = json.loads((run_dir / "data" / "meta.json").read_text())
    return [s["spec"] for s in meta["provenance"]["sources"]]


def test_the_readme_order_gives_each_run_its_own_folder_and_data(tmp_path, monkeypatch):
    """`tinyllm train` then `tinyllm train --data my_texts/`: the second run used to reuse the
    first run's prepared data (and folder); now it gets runs/tinyllm-2 and its own data."""
    foxes, cats = corpus(tmp_path / "foxes", "fox"), corpus(tmp_path / "cats", "cat")
    monkeypatch.chdir(tmp_path)
    messages = []
    first = Trainer(config(None, foxes), log=messages.append)
    first.run()
    before = (tmp_path / "runs/tinyllm/checkpoint/model.safetensors").read_bytes()
    second = Trainer(config(None, cats, model={**MODEL, "vocab_size": 280}), log=messages.append)
    second.run()
    assert first.run_dir.as_posix() == "runs/tinyllm"
    assert second.run_dir.as_posix() == "runs/tinyllm-2"
    assert any("runs/tinyllm holds an earlier run; this run goes to runs/tinyllm-2" in m
               for m in messages)
    assert sources(tmp_path / "runs/tinyllm-2") == [str(tmp_path / "cats")]
    assert second.tok.vocab_size == 280 < first.tok.vocab_size
    assert (tmp_path / "runs/tinyllm/checkpoint/model.safetensors").read_bytes() == before
    saved = json.loads((tmp_path / "runs/tinyllm-2/config.json").read_text())
    assert saved["train"]["out_dir"] == "runs/tinyllm-2"


def test_an_explicit_out_that_holds_a_run_is_refused_untouched(tmp_path):
    data = corpus(tmp_path / "foxes", "fox")
    Trainer(config(tmp_path / "run", data), log=lambda m: None).run()
    listing = sorted(p.name for p in (tmp_path / "run").iterdir())
    with pytest.raises(RunFolderError, match=r"already holds a run.*--resume .*run.*--out"):
        Trainer(config(tmp_path / "run", data, max_steps=4), log=lambda m: None)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == listing
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="already holds files"):
        Trainer(config(tmp_path / "other", data), log=lambda m: None)
    # An empty folder is fine; a run that fails before it starts leaves no folder behind.
    (tmp_path / "empty").mkdir()
    Trainer(config(tmp_path / "empty", data), log=lambda m: None)
    with pytest.raises(FileNotFoundError):
        Trainer(config(tmp_path / "failed", str(tmp_path / "no such corpus")), log=lambda m: None)
    assert not (tmp_path / "failed").exists()


def test_the_cli_names_out_and_resume_in_one_line(tmp_path, capsys):
    data = corpus(tmp_path / "foxes", "fox")
    args = ["train", "--preset", "tiny", "--data", data, "--out", str(tmp_path / "run"),
            "--max-steps", "1", "--vocab-size", "280", "--n-layer", "1", "--block-size", "16",
            "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--out" in err[0], err


def test_resume_refuses_data_that_changed_and_reprepares_missing_data(tmp_path):
    import shutil

    data = corpus(tmp_path / "foxes", "fox")
    straight = tmp_path / "straight"
    Trainer(config(straight, data, max_steps=4), log=lambda m: None).run()

    run = tmp_path / "run"
    Trainer(config(run, data, max_steps=4), log=lambda m: None).run(stop_at=2)
    shutil.rmtree(run / "data")  # gone (or never finished): prepared again, identically
    resumed = Trainer(config(run, data, max_steps=4), resume=True, log=lambda m: None)
    assert resumed.step == 2
    resumed.run()
    a = load_file(ckpt.checkpoint_dir(straight) / "model.safetensors")[0]
    b = load_file(ckpt.checkpoint_dir(run) / "model.safetensors")[0]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    (tmp_path / "foxes" / "doc99.txt").write_text("A new document about something else. " * 9)
    with pytest.raises(RunFolderError, match=r"cannot resume .*no longer matches.*foxes changed"):
        Trainer(config(run, data, max_steps=6), resume=True, log=lambda m: None)
