"""Faults: NaN or inf in a batch's loss or in a gradient stops the run naming the step, or with
skip_nonfinite skips exactly that update; and a run killed with SIGKILL at random moments
(including during a checkpoint write) resumes to bit-identical weights."""

import numpy as np
import pytest

import autograd as ag
from tests.tinyllm.tiny_runs import tiny_config, write_fox_corpus
from tinyllm.train import Trainer, TrainingDiverged

# NumPy warns about the poisoned arithmetic itself; the run's own message is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_fox_corpus(tmp_path_factory.mktemp("corpus"))


def config(out_dir, data, **kw):
    return tiny_config(out_dir, data, **{"max_steps": 6, "eval_interval": 3, **kw})


def inject(trainer, monkeypatch, where, value, at_step=3):
    """Put `value` (nan or inf) into the loss or into one gradient during step `at_step`."""
    if where == "loss":
        real = trainer.model.forward

        def forward(idx, targets=None, **kw):
            logits, loss = real(idx, targets, **kw)
            if targets is not None and trainer.step == at_step:
                loss = loss * value
            return logits, loss

        monkeypatch.setattr(trainer.model, "forward", forward)
    else:
        import tinyllm.train as train_module

        real_clip = train_module.optim.clip_grad_norm

        def clip(params, max_norm):
            params = list(params)
            if trainer.step == at_step:
                params[1].grad[..., 0] = value
            return real_clip(params, max_norm)

        monkeypatch.setattr(train_module.optim, "clip_grad_norm", clip)


@pytest.mark.parametrize("where", ["loss", "gradient"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_loss_or_gradient_stops_the_run_naming_the_step(tmp_path, corpus,
                                                                     monkeypatch, where, value):
    trainer = Trainer(config(tmp_path / "stop", corpus), log=lambda m: None)
    inject(trainer, monkeypatch, where, value)
    with pytest.raises(TrainingDiverged, match=r"step 3: the loss .* is not finite.*--skip-nonfinite"):
        trainer.run()
    assert trainer.step == 3


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_skip_nonfinite_skips_exactly_that_update(tmp_path, corpus, monkeypatch, where):
    trainer = Trainer(config(tmp_path / "skip", corpus, skip_nonfinite=True), log=lambda m: None)
    inject(trainer, monkeypatch, where, np.nan)
    for _ in range(3):
        trainer.train_step()
    before = {n: np.array(p.data) for n, p in trainer.model.named_parameters()}
    moments = [np.array(s["exp_avg"]) for s in trainer.optimizer.state.values()]
    trainer.train_step()  # step 3: poisoned, skipped
    assert trainer.skipped == 1 and trainer.step == 4
    for n, p in trainer.model.named_parameters():
        np.testing.assert_array_equal(p.data, before[n], err_msg=n)
    for m, s in zip(moments, trainer.optimizer.state.values()):
        np.testing.assert_array_equal(m, s["exp_avg"])
    summary = trainer.run()
    assert summary["skipped_batches"] == 1 and summary["steps"] == 6
    assert all(np.isfinite(p.data).all() for p in trainer.model.parameters())


def test_the_cli_reports_divergence_in_one_line(tmp_path, corpus, monkeypatch, capsys):
    from tinyllm.cli import main

    real = ag.Tensor.backward

    def poisoned(self, *a, **k):
        out = real(self, *a, **k)
        for p in trainer_params:
            if p.grad is not None:
                p.grad[...] = np.inf
        return out

    import tinyllm.train as train_module

    trainer_params = []
    real_init = train_module.Trainer._setup

    def setup(self, *a, **k):
        real_init(self, *a, **k)
        trainer_params.extend(self.model.parameters())

    monkeypatch.setattr(train_module.Trainer, "_setup", setup)
    monkeypatch.setattr(ag.Tensor, "backward", poisoned)
    args = ["train", "--preset", "tiny", "--data", corpus, "--out", str(tmp_path / "cli"),
            "--max-steps", "2", "--vocab-size", "280", "--n-layer", "1", "--block-size", "16",
            "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tinyllm train: step 0: the loss") and "not finite" in err[-1]
