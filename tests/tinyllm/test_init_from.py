"""`tinyllm train --init-from RUN`: continued pre-training from a run's weights and tokenizer."""

import numpy as np
import pytest

from tinyllm import checkpoint as ckpt
from tinyllm.cli import main
from tinyllm.safetensors import load_file
from tinyllm.train import TrainConfig, Trainer

TEXT = ["".join(f"The function f{i}_{j}(x) returns {i * j} times x,\nand the list holds {j} "
                f"items.\n" for j in range(8)) for i in range(12)]
NEW_TEXT = ["".join(f"A new topic: class Widget{i}_{j} draws\n{i + j} shapes on a canvas.\n"
                    for j in range(8)) for i in range(12)]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("init_from")
    for folder, texts in (("old", TEXT), ("new", NEW_TEXT)):
        (root / folder).mkdir()
        for i, text in enumerate(texts):
            (root / folder / f"doc{i}.txt").write_text(text)
    model = dict(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16)
    cfg = TrainConfig(out_dir=str(root / "base"), data=str(root / "old"), batch_size=4,
                      max_steps=6, eval_interval=6, eval_tokens=200, sample_tokens=4,
                      warmup_steps=2, progress=False, model=model)
    Trainer(cfg).run()
    return root


def weights(run_dir):
    return load_file(ckpt.checkpoint_dir(run_dir) / "model.safetensors")[0]


def test_continued_run_starts_from_the_runs_weights_and_keeps_its_tokenizer(base_run):
    cfg = TrainConfig(out_dir=str(base_run / "cont"), data=str(base_run / "new"), batch_size=4,
                      max_steps=4, eval_interval=4, eval_tokens=200, sample_tokens=4,
                      progress=False, init_from=str(base_run / "base"), model={"dropout": 0.0})
    trainer = Trainer(cfg)
    trainer.run(stop_at=0)  # a checkpoint before any step: the starting weights
    start, base = weights(base_run / "cont"), weights(base_run / "base")
    assert start.keys() == base.keys()
    for name in base:
        np.testing.assert_array_equal(start[name], base[name])
    assert ((base_run / "cont" / "tokenizer.json").read_text()
            == (base_run / "base" / "tokenizer.json").read_text())
    assert trainer.model_cfg.block_size == 16 and trainer.model_cfg.dropout == 0.0


def test_cli_trains_on_and_refuses_another_vocabulary_in_one_line(base_run, capsys):
    args = ["train", "--init-from", str(base_run / "base"), "--data", str(base_run / "new"),
            "--max-steps", "2", "--eval-interval", "2", "--eval-tokens", "200", "--batch-size", "4",
            "--quiet"]
    assert main([*args, "--out", str(base_run / "cli")]) == 0
    assert not np.array_equal(weights(base_run / "cli")["transformer.h.0.mlp.c_fc.weight"],
                              weights(base_run / "base")["transformer.h.0.mlp.c_fc.weight"])
    capsys.readouterr()
    assert main([*args, "--out", str(base_run / "bad"), "--vocab-size", "512"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tinyllm train: error: --vocab-size 512 differs from {base_run / 'base'}'s "
                   "vocabulary (300): continued pre-training keeps the run's tokenizer"]
    assert main([*args, "--out", str(base_run / "bad2"), "--n-embd", "32"]) == 1
    assert "shape is fixed by the weights" in capsys.readouterr().err
    assert main([*args, "--out", str(base_run / "bad3"), "--init-from", str(base_run)]) == 1
    assert "not a run directory" in capsys.readouterr().err
