"""What a person reads while training: samples as text (not escaped repr strings), the step plan
said once, summary numbers rounded, the bar's numbers redrawn at most twice a second, and a
word about loss.png when matplotlib is missing."""

import json
import time

import pytest

from tests.tinyllm.tiny_runs import tiny_config, write_fox_corpus
from tinyllm.train import Trainer, rounded


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_fox_corpus(tmp_path_factory.mktemp("corpus"))


def config(out_dir, data, **kw):
    return tiny_config(out_dir, data, **{"max_steps": 4, "eval_interval": 4, **kw})


def test_samples_are_printed_as_text(tmp_path, corpus):
    messages = []
    trainer = Trainer(config(tmp_path / "run", corpus), log=messages.append)
    trainer.sample = lambda *a, **k: "def f(x):\n    return 'x'\n"
    trainer.run()
    shown = next(m for m in messages if "sample:" in m)
    assert "sample: def f(x):\n" in shown and "    return 'x'" in shown
    assert "\\n" not in shown and '"def' not in shown and "'def" not in shown


def test_the_step_plan_is_said_once(tmp_path, corpus):
    messages = []
    trainer = Trainer(config(tmp_path / "run", corpus, max_steps=60, max_minutes=0.02,
                             eval_interval=5), log=messages.append)
    slow = trainer.train_step

    def step():  # uneven speed, so every re-plan comes out different
        time.sleep(0.001 * (trainer.step % 7))
        return slow()

    trainer.train_step = step
    trainer.run()
    assert sum("planned" in m for m in messages) == 1, [m for m in messages if "planned" in m]


def test_summary_numbers_are_rounded(tmp_path, corpus):
    summary = Trainer(config(tmp_path / "run", corpus), log=lambda m: None).run()
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ("val_loss", "val_bpb", "val_ppl", "tokens_per_s", "wall_s"):
        assert len(repr(saved[key]).replace(".", "").lstrip("0")) <= 5, (key, saved[key])
        assert saved[key] == summary[key]
    out = rounded({"a": 1.23456789, "b": [1], "d": 12345678.9, "e": 7, "f": float("inf")})
    assert out == {"a": 1.235, "b": [1], "d": 12350000.0, "e": 7, "f": float("inf")}


class CountingBar:
    def __init__(self, *a, **k):
        self.postfixes, self.total = 0, k.get("total")

    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        self.postfixes += 1

    def write(self, text):
        pass

    def close(self):
        pass


def test_the_bar_numbers_change_at_most_twice_a_second(tmp_path, corpus, monkeypatch):
    import tinyllm.progress

    bars = []
    monkeypatch.setattr(tinyllm.progress, "progress_bar",
                        lambda **k: bars.append(CountingBar(**k)) or bars[-1])
    trainer = Trainer(config(tmp_path / "run", corpus, max_steps=40, eval_interval=100),
                      log=lambda m: None)
    start = time.perf_counter()
    trainer.run()
    elapsed = time.perf_counter() - start
    assert 1 <= bars[0].postfixes <= elapsed / 0.5 + 1, (bars[0].postfixes, elapsed)


def test_a_missing_matplotlib_is_said_once(tmp_path, corpus, monkeypatch):
    import tinyllm.plot

    monkeypatch.setattr(tinyllm.plot, "plot_losses", lambda *a, **k: None)
    messages = []
    Trainer(config(tmp_path / "run", corpus), log=messages.append).run()
    said = [m for m in messages if "loss.png" in m]
    assert len(said) == 1 and "install the plot extra" in said[0]
    assert not (tmp_path / "run" / "loss.png").exists()
