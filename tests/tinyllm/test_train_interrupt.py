"""Ctrl-C never saves a state between steps: an interrupt anywhere inside a step, resumed,
gives weights bit-identical to an uninterrupted run; a real SIGINT is deferred to the end of
the step; an interrupt inside `optimizer.step()` saves nothing and keeps the last checkpoint."""

import os
import signal

import numpy as np
import pytest

from tinyllm import checkpoint as ckpt
from tinyllm.safetensors import load_file
from tinyllm.train import TrainConfig, Trainer

TEXT = "\n\n".join(f"Document {i}. The quick brown fox {i} jumps over the lazy dog. " * 3
                   for i in range(40))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(4):
        (folder / f"part{i}.txt").write_text(TEXT[i * len(TEXT) // 4:(i + 1) * len(TEXT) // 4])
    return str(folder)


def config(out_dir, data, **kw):
    # dropout and two micro-batches: the dropout generator and the data position both move
    # inside a step, so an interrupt mid-step that saved them as they were would show.
    model = dict(vocab_size=290, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
    base = dict(out_dir=str(out_dir), data=data, batch_size=2, grad_accum=2, max_steps=6,
                eval_interval=2, eval_tokens=64, sample_tokens=4, warmup_steps=2,
                progress=False, model=model)
    return TrainConfig(**{**base, **kw})


def weights(run_dir):
    return load_file(ckpt.checkpoint_dir(run_dir) / "model.safetensors")[0]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, corpus):
    run = tmp_path_factory.mktemp("straight")
    Trainer(config(run, corpus), log=lambda m: None).run()
    return weights(run)


def interrupt_at(trainer, monkeypatch, where, step=3):
    """Raise KeyboardInterrupt at `where` during step `step` (counting from 0)."""
    calls = {"n": 0}

    def trip(obj, name, nth=1):
        real = getattr(obj, name)

        def wrapper(*args, **kwargs):
            if trainer.step == step:
                calls["n"] += 1
                if calls["n"] == nth:
                    raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(obj, name, wrapper)

    import autograd as ag

    if where == "second micro-batch":
        trip(trainer.train_loader, "next_batch", nth=2)
    elif where == "forward":
        trip(trainer.model, "forward", nth=2)
    elif where == "backward":
        trip(ag.Tensor, "backward", nth=1)
    elif where == "clip":
        import tinyllm.train as train_module

        trip(train_module.optim, "clip_grad_norm")
    elif where == "inside optimizer.step":
        trip(trainer.optimizer, "update", nth=3)  # two parameters already updated
    elif where == "zero_grad after the update":
        trip(trainer.optimizer, "zero_grad")


@pytest.mark.parametrize("where, saved_step", [
    ("second micro-batch", 3), ("forward", 3), ("backward", 3), ("clip", 3),
    ("inside optimizer.step", 2), ("zero_grad after the update", 4)])
def test_an_interrupt_anywhere_in_a_step_resumes_bit_identically(
        tmp_path, corpus, straight, monkeypatch, where, saved_step):
    messages = []
    trainer = Trainer(config(tmp_path, corpus), log=messages.append)
    interrupt_at(trainer, monkeypatch, where)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    monkeypatch.undo()
    state = ckpt.read_json(ckpt.checkpoint_dir(tmp_path) / "state.json")
    assert state["step"] == saved_step, messages
    if saved_step == 2:
        assert any("nothing was saved" in m for m in messages)
    resumed = Trainer(config(tmp_path, corpus), resume=True, log=lambda m: None)
    assert resumed.step == saved_step
    resumed.run()
    b = weights(tmp_path)
    for name in straight:
        np.testing.assert_array_equal(straight[name], b[name], err_msg=f"{where}: {name}")


def test_a_real_ctrl_c_is_deferred_to_the_end_of_the_step(tmp_path, corpus, straight, monkeypatch):
    trainer = Trainer(config(tmp_path, corpus), log=lambda m: None)
    real = trainer.optimizer.update
    sent = []

    def update(*args):
        if trainer.step == 3 and not sent:  # SIGINT in the middle of the update of step 3
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(trainer.optimizer, "update", update)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    monkeypatch.undo()
    assert trainer.step == 4  # the step finished, then the run stopped
    resumed = Trainer(config(tmp_path, corpus), resume=True, log=lambda m: None)
    assert resumed.step == 4
    resumed.run()
    b = weights(tmp_path)
    for name in straight:
        np.testing.assert_array_equal(straight[name], b[name], err_msg=name)
