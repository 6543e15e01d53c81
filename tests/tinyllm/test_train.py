"""The training loop: resume is bit-identical, checkpoints survive interrupted writes and
reject damage, divergence is reported, and the command works end to end."""

import json
import os

import numpy as np
import pytest

from tinyllm import checkpoint as ckpt
from tinyllm.cli import main
from tinyllm.model import GPT, GPTConfig
from tinyllm.train import TrainConfig, Trainer, TrainingDiverged

TEXT = "\n\n".join(
    f"Document {i}. The quick brown fox number {i} jumps over the lazy dog, "
    f"and the function f(x) = {i} * x returns a value. " * 3 for i in range(60))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(4):
        (folder / f"part{i}.txt").write_text(TEXT[i * len(TEXT) // 4:(i + 1) * len(TEXT) // 4])
    return str(folder)


def config(out_dir, data, **kw):
    model = dict(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
    base = dict(out_dir=str(out_dir), data=data, batch_size=4, max_steps=8, eval_interval=4,
                eval_tokens=400, sample_tokens=8, warmup_steps=2, progress=False, model=model)
    return TrainConfig(**{**base, **kw})


def weights(run_dir):
    folder = ckpt.checkpoint_dir(run_dir)
    from tinyllm.safetensors import load_file

    return load_file(folder / "model.safetensors")[0]


@pytest.mark.parametrize("shards", [1, 2])
def test_resume_is_bit_identical(tmp_path, corpus, shards):
    quiet = lambda msg: None  # noqa: E731
    straight = Trainer(config(tmp_path / "a", corpus, shards=shards), log=quiet)
    summary = straight.run()
    assert summary["steps"] == 8 and np.isfinite(summary["val_bpb"])
    assert summary["shards"] == shards

    first = Trainer(config(tmp_path / "b", corpus, shards=shards), log=quiet)
    assert first.run(stop_at=3) is None
    resumed = Trainer(config(tmp_path / "b", corpus, shards=shards), resume=True, log=quiet)
    assert resumed.step == 3
    resumed.run()
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_batch_shards_train_as_the_whole_batch(tmp_path, corpus):
    """Without dropout, a batch cut into threads' parts (autograd.nn.shards) takes the same
    steps as the whole batch, to float32 rounding; with dropout its runs repeat exactly."""
    def losses(name, **kw):
        Trainer(config(tmp_path / name, corpus, max_steps=5, **kw), log=lambda m: None).run()
        rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r]

    plain = {"model": {**config(tmp_path, corpus).model, "dropout": 0.0}}
    np.testing.assert_allclose(losses("one", shards=1, **plain), losses("two", shards=2, **plain),
                               rtol=2e-5)
    assert losses("drop1", shards=2) == losses("drop2", shards=2)
    with pytest.raises(ValueError, match="shards must be at most batch_size"):
        config(tmp_path / "x", corpus, shards=5).check()


def test_shards_under_mpi_are_refused_before_any_data_is_read(tmp_path):
    class TwoRanks:  # only what the refusal looks at
        size, rank, is_root = 2, 0, True

    missing = str(tmp_path / "no-such-data")  # would fail later, if data were read first
    with pytest.raises(ValueError, match="shards: over several MPI ranks"):
        Trainer(config(tmp_path / "run", missing, shards=2), dist=TwoRanks(), log=lambda m: None)
    assert not (tmp_path / "run").exists()


def test_run_directory_contents(tmp_path, corpus):
    run = tmp_path / "run"
    Trainer(config(run, corpus, max_steps=4), log=lambda m: None).run()
    for name in ("config.json", "tokenizer.json", "metrics.jsonl", "summary.json",
                 "checkpoint/model.safetensors", "checkpoint/optimizer.safetensors",
                 "checkpoint/state.json"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert {"val_loss", "val_ppl", "val_bpb", "train_tokens", "tokens_per_s", "steps",
            "wall_s"} <= summary.keys()
    from autograd import blas

    assert summary["matmul"] == blas.library() and summary["matmul"] in ("mkl", "numpy")
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in x for x in lines) == 4 and any("sample" in x for x in lines)


def test_interrupted_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    model = GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4))
    from autograd.optim import AdamW

    opt = AdamW(model.parameters())
    ckpt.save_checkpoint(tmp_path, model, opt, {"step": 1})
    before = {k: v.copy() for k, v in weights(tmp_path).items()}
    for p in model.parameters():
        p.data += 1.0

    import tinyllm.checkpoint as module

    real = module.write_json
    monkeypatch.setattr(module, "write_json", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, model, opt, {"step": 2})
    monkeypatch.setattr(module, "write_json", real)
    state = ckpt.load_checkpoint(tmp_path, model, opt)
    assert state["step"] == 1
    for name, arr in weights(tmp_path).items():
        np.testing.assert_array_equal(arr, before[name])

    # A crash between the two renames: only .checkpoint.old is left, and it is used.
    os.replace(tmp_path / "checkpoint", tmp_path / ".checkpoint.old")
    assert ckpt.checkpoint_dir(tmp_path).name == ".checkpoint.old"
    assert ckpt.load_checkpoint(tmp_path, model)["step"] == 1


def test_damaged_or_mismatched_checkpoints_are_clear_errors(tmp_path):
    model = GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4))
    from autograd.optim import AdamW

    ckpt.save_checkpoint(tmp_path, model, AdamW(model.parameters()), {"step": 0})
    other = GPT(GPTConfig(vocab_size=12, block_size=4, n_layer=1, n_head=1, n_embd=4))
    with pytest.raises(ckpt.CheckpointError, match=r"(?s)model.safetensors does not fit.*wte"):
        ckpt.load_checkpoint(tmp_path, other)
    path = tmp_path / "checkpoint" / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors.*truncated"):
        ckpt.load_checkpoint(tmp_path, model)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        ckpt.load_checkpoint(tmp_path, model)
    with pytest.raises(ckpt.CheckpointError, match="no such run directory"):
        ckpt.load_checkpoint(tmp_path / "nope", model)


def test_our_safetensors_files_are_read_by_the_reference_library(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from tinyllm.safetensors import save_file

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, dtype=np.int64)}
    save_file(arrays, tmp_path / "x.safetensors", {"k": "v"})
    back = st.load_file(str(tmp_path / "x.safetensors"))
    for name in arrays:
        np.testing.assert_array_equal(back[name], arrays[name])


def test_divergence_names_the_step(tmp_path, corpus):
    trainer = Trainer(config(tmp_path / "nan", corpus), log=lambda m: None)
    trainer.model.transformer.wte.weight.data[...] = np.nan
    with pytest.raises(TrainingDiverged, match="step 0"):
        trainer.run()
    skipping = Trainer(config(tmp_path / "skip", corpus, skip_nonfinite=True, max_steps=2),
                       log=lambda m: None)
    skipping.model.transformer.wte.weight.data[...] = np.nan
    skipping.train_step()
    assert skipping.skipped == 1
    exploding = Trainer(config(tmp_path / "big", corpus), log=lambda m: None)
    exploding.model.transformer.wte.weight.data[...] *= 1e4  # huge, confidently wrong logits
    with pytest.raises(TrainingDiverged, match="step 0: .* exploded"):
        exploding.train_step()


def test_cli_trains_resumes_and_samples(tmp_path, corpus, capsys):
    run = str(tmp_path / "cli")
    args = ["train", "--preset", "tiny", "--data", corpus, "--out", run, "--max-steps", "4",
            "--eval-interval", "2", "--eval-tokens", "200", "--vocab-size", "280", "--quiet",
            "--n-layer", "1", "--block-size", "16"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["steps"] == 4
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["model"]["n_layer"] == 1
    assert main(["train", "--resume", run, "--max-steps", "6", "--quiet"]) == 0
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["steps"] == 6
    capsys.readouterr()
    assert main(["sample", run, "--prompt", "The quick", "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("The quick")
    assert main(["sample", str(tmp_path / "missing")]) == 1


def test_loss_plot_is_written_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    from tinyllm.plot import plot_losses

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0}, {"step": 2, "val_loss": 4.5}]))
    out = plot_losses(metrics, tmp_path / "loss.png")
    assert out is not None and out.read_bytes().startswith(b"\x89PNG")


def test_progress_lines_in_a_log_file(capsys):
    from tinyllm.progress import _Lines

    bar = _Lines(total=4, initial=0, desc="train", unit="step", every=0.0)
    bar.set_postfix(loss="1.234")
    for _ in range(4):
        bar.update(1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and err[-1].startswith("train 4/4 loss 1.234") and "ETA" in err[0]


def test_a_single_document_is_split_so_validation_exists(tmp_path):
    one_doc = tmp_path / "one.txt"
    one_doc.write_text(TEXT[:20000].replace("\n\n", "\n"))  # one file under 1 MiB: one document
    summary = Trainer(config(tmp_path / "run", str(one_doc), max_steps=2), log=lambda m: None).run()
    assert summary["val_tokens"] > 0 and summary["val_bpb"] > 0


def test_without_a_validation_split_training_data_is_named_so(tmp_path, corpus, monkeypatch):
    import tinyllm.train as train_module

    real = train_module.load_data

    def no_val(*args, **kwargs):
        tok, train, val, test = real(*args, **kwargs)
        return tok, train, val[:0], test

    monkeypatch.setattr(train_module, "load_data", no_val)
    messages = []
    trainer = Trainer(config(tmp_path / "run", corpus, max_steps=2), log=messages.append)
    summary = trainer.run()
    # Named for what it is: a loss on training data is not a validation loss.
    assert not any(k.startswith("val_") for k in summary), summary
    assert np.isfinite(summary["train_eval_bpb"]) and summary["train_eval_bpb"] > 0
    assert "training split" in summary["evaluated_on"]
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["train_eval_tokens"] == summary["train_eval_tokens"] > 0
    assert any("evaluating on the training split" in m for m in messages)


def test_a_short_run_learns_the_builtin_corpus(tmp_path):
    """A quality guard: the tiny preset, 600 seeded steps (~15 s), must beat a unigram model
    (about 2.6-3.0 bits per byte on this corpus) by a margin; it reaches about 2.36."""
    from tinyllm.train import PRESETS

    model, train = PRESETS["tiny"]
    cfg = TrainConfig(**{**train, "max_steps": 600, "lr": 5e-3, "eval_interval": 600,
                         "out_dir": str(tmp_path / "run"), "progress": False}, model=dict(model))
    summary = Trainer(cfg, log=lambda m: None).run()
    assert summary["val_bpb"] < 2.55, summary


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, corpus, monkeypatch):
    trainer = Trainer(config(tmp_path / "run", corpus), log=lambda m: None)
    real_step = trainer.train_step

    def interrupted_at_3():
        if trainer.step == 3:
            raise KeyboardInterrupt
        return real_step()

    monkeypatch.setattr(trainer, "train_step", interrupted_at_3)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    resumed = Trainer(config(tmp_path / "run", corpus), resume=True, log=lambda m: None)
    assert resumed.step == 3
    assert resumed.run()["steps"] == 8
