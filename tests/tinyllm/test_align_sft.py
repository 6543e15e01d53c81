"""`tinyllm finetune`: the loop improves held-out exact match, resumes bit for bit, writes a run
folder other commands load, and reports bad input in one line."""

import json

import numpy as np
import pytest

from tests.tinyllm.align_helpers import make_base_run, write_jsonl
from tinyllm import checkpoint as ckpt
from tinyllm.align.builtin_qa import builtin_examples, generate_items, split_of
from tinyllm.align.sft import FinetuneConfig, FineTuner, exact_match, load_run
from tinyllm.cli import main
from tinyllm.safetensors import load_file

WORDS = ["fox", "dog", "cat", "list", "world", "hello", "number", "the", "quick", "brown"]


def say_ok_records(n, seed):
    """A task a tiny model learns in seconds: whatever the word, answer "OK"."""
    rng = np.random.default_rng(seed)
    return [{"prompt": f"Say OK: {' '.join(rng.choice(WORDS, 3))}", "response": "OK"}
            for _ in range(n)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    make_base_run(root / "base")
    write_jsonl(root / "ok.jsonl", say_ok_records(80, 0))
    return root


def config(root, out, **kw):
    base = dict(base=str(root / "base"), data=str(root / "ok.jsonl"), out_dir=str(root / out),
                batch_size=8, max_steps=30, lr=1e-2, warmup_steps=3, eval_interval=10,
                eval_examples=8, answer_tokens=4, progress=False, plot=False)
    return FinetuneConfig(**{**base, **kw})


def test_seeded_short_run_raises_exact_match_and_lowers_validation_loss(setup):
    summary = FineTuner(config(setup, "run"), log=lambda m: None).run()
    assert summary["base_exact_match"] == 0.0
    assert summary["exact_match"] >= 0.75
    records = [json.loads(line) for line in (setup / "run" / "metrics.jsonl").open()]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert val[-1] < 0.5 * val[0]
    assert summary["steps"] == 30 and summary["data"]["train"]["kept"] == 72
    # a run folder like pre-training's, loadable as any run, with the chat tokens saved
    for name in ("config.json", "tokenizer.json", "checkpoint", "metrics.jsonl", "summary.json"):
        assert (setup / "run" / name).exists()
    model, tok, saved = load_run(setup / "run")
    assert "<|assistant|>" in tok.special_tokens and model.config.vocab_size == tok.vocab_size
    assert saved["finetune"]["data"].endswith("ok.jsonl")
    assert main(["sample", str(setup / "run"), "--max-new-tokens", "3", "--seed", "0"]) == 0


@pytest.mark.parametrize("batching", ["pad", "pack"])
def test_resume_equals_not_stopping(setup, batching):
    small = dict(max_steps=6, eval_interval=3, batching=batching, batch_size=4, eval_examples=4,
                 dropout=0.1)  # dropout draws random numbers: their generator must resume too
    FineTuner(config(setup, f"whole-{batching}", **small), log=lambda m: None).run()
    cfg = config(setup, f"halves-{batching}", **small)
    FineTuner(cfg, log=lambda m: None).run(stop_at=4)
    with open(setup / f"halves-{batching}" / "metrics.jsonl", "a") as f:  # logged, then a crash
        f.write(json.dumps({"step": 5, "loss": 9.9}) + "\n")
    FineTuner(cfg, resume=True, log=lambda m: None).run()
    records = [json.loads(x) for x in (setup / f"halves-{batching}" / "metrics.jsonl").open()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    a = load_file(ckpt.checkpoint_dir(setup / f"whole-{batching}") / "model.safetensors")[0]
    b = load_file(ckpt.checkpoint_dir(setup / f"halves-{batching}") / "model.safetensors")[0]
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_exact_match_compares_greedy_answers(setup):
    model, tok, _ = load_run(setup / "run")
    from tinyllm.align.sft_data import read_jsonl

    examples = read_jsonl(setup / "ok.jsonl")[:6]
    score, replies = exact_match(model, tok, examples, max_new_tokens=4)
    assert score == np.mean([r == "OK" for r in replies])
    wrong = [type(e)(e.messages[:-1] + [{"role": "assistant", "content": "NO"}]) for e in examples]
    assert exact_match(model, tok, wrong, max_new_tokens=4)[0] == np.mean(
        [r == "NO" for r in replies])


def test_builtin_tasks_keep_splits_apart_and_are_seeded():
    for name in ("reverse", "sort", "add", "mix"):
        test = generate_items(name, "test", n=50)
        train = generate_items(name, "train", n=500)
        assert {split_of(i.question) for i in test} == {"test"}
        assert not {i.question for i in test} & {i.question for i in train}
        assert generate_items(name, "test", n=50) == test  # the same seed, the same items
        assert generate_items(name, "test", n=50, seed=1) != test
        assert all(i.answer != i.wrong for i in train)
    item = generate_items("reverse", "train", n=1)[0]
    digits = item.question.split(": ")[1].split()
    assert item.answer.split() == digits[::-1]
    sums = generate_items("add", "train", n=20)
    for s in sums:
        a, b = s.question[len("What is "):-1].split(" + ")
        assert int(s.answer) == int(a) + int(b)
    assert builtin_examples("sort", "val", n=3)[0].messages[1]["role"] == "assistant"


def test_cli_finetune_runs_and_resumes(setup, capsys):
    out = setup / "cli"
    assert main(["finetune", str(setup / "base"), "--data", str(setup / "ok.jsonl"), "--out",
                 str(out), "--max-steps", "4", "--eval-interval", "2", "--batch-size", "4",
                 "--eval-examples", "4", "--answer-tokens", "3", "--quiet", "--no-plot"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4
    assert main(["finetune", "--resume", str(out), "--max-steps", "6", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    capsys.readouterr()


@pytest.mark.parametrize("make_args, message", [
    (lambda r: ["finetune", str(r / "nope"), "--out", str(r / "x")], "not a run directory"),
    (lambda r: ["finetune", str(r / "base")], "give the pre-trained run and a new folder"),
    (lambda r: ["finetune", str(r / "base"), "--out", str(r / "x"), "--data", "builtin:nope"],
     "unknown built-in data set 'nope'"),
    (lambda r: ["finetune", str(r / "base"), "--out", str(r / "x"), "--data",
                str(r / "bad.jsonl")], "bad.jsonl:2: missing field 'response'"),
    (lambda r: ["finetune", str(r / "base"), "--out", str(r / "x"), "--batching", "zip"],
     "--batching must be 'pad' or 'pack'"),
    (lambda r: ["finetune", str(r / "base"), "--out", str(r / "run")], "already holds a run"),
    (lambda r: ["finetune", "--resume", str(r / "base")], "not a fine-tuning run"),
])
def test_cli_bad_input_is_one_line(setup, capsys, make_args, message):
    (setup / "bad.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    assert main(make_args(setup)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tinyllm finetune: error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)
