"""`tinyllm eval` end to end on a small hand-built run: JSON output, tables, one-line errors."""

import json

import numpy as np
import pytest

from autograd import optim
from tinyllm import GPT, GPTConfig
from tinyllm.checkpoint import save_checkpoint, write_json
from tinyllm.cli import main
from tinyllm.tokenizer import BPETokenizer

TEXT = ("The quick brown fox jumps over the lazy dog. Question: what is a fox?\n"
        "Answer: an animal. A B C D\n") * 30


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    tok = BPETokenizer.train(TEXT, 300, special_tokens=["<|endoftext|>"])
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)
    model = GPT(cfg, seed=0)
    tok.save(folder / "tokenizer.json")
    write_json(folder / "config.json", {"model": cfg.to_dict(), "train": {}})
    save_checkpoint(folder, model, optim.AdamW(model.parameters()), {"step": 0})
    return folder


def test_ppl_on_a_text_file_scores_exactly_its_bytes(run_dir, tmp_path, capsys):
    text_file = tmp_path / "doc.txt"
    text_file.write_text("Hello world, a little text to score.\nAnd a second line é.\n")
    out = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--task", "ppl", "--data", str(text_file),
                 "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())[f"ppl:{text_file}:val"]
    assert result["bytes"] == len(text_file.read_bytes())
    assert result["ppl"] == pytest.approx(np.exp(result["loss"]))
    assert result["bpb"] == pytest.approx(result["loss"] * result["tokens"] / np.log(2)
                                          / result["bytes"])
    assert "bits per byte" in capsys.readouterr().out
    # a sliding window scores the same tokens, each with more context
    assert main(["eval", str(run_dir), "--task", "ppl", "--data", str(text_file), "--stride",
                 "8", "--out", str(out), "--quiet"]) == 0
    sliding = json.loads(out.read_text())[f"ppl:{text_file}:val:stride8"]
    assert sliding["tokens"] == result["tokens"] and sliding["bytes"] == result["bytes"]


def test_mc_on_an_mmlu_folder_writes_everything(run_dir, tmp_path, capsys):
    data = tmp_path / "mmlu"
    data.mkdir()
    (data / "astronomy_test.csv").write_text("What is a fox?,an animal,a star,a rock,a tree,A\n"
                                             "Which is fast?,a snail,a fox,a rock,a tree,B\n")
    (data / "astronomy_dev.csv").write_text("Is a dog lazy?,yes,no,maybe,never,A\n")
    for method in ("letter", "loglik", "generate"):
        assert main(["eval", str(run_dir), "--task", "mc", "--data", str(data), "--method",
                     method, "--shots", "1", "--quiet", "--resamples", "100"]) == 0
    results = json.loads((run_dir / "eval.json").read_text())
    for method in ("letter", "loglik", "generate"):
        r = results[f"mc:{method}:{data}"]
        assert r["n"] == 2 and r["micro"]["chance"] == 0.25 and len(r["items"]) == 2
        assert r["shots"] == 1 and r["shots_available"] == 1
        assert r["micro"]["ci"][0] <= r["micro"]["accuracy"] <= r["micro"]["ci"][1]
        assert r["micro"]["centered"] == pytest.approx((r["micro"]["accuracy"] - 0.25) / 0.75)
    assert "macro" in capsys.readouterr().out


def test_complete_on_the_builtin_set(run_dir, capsys):
    assert main(["eval", str(run_dir), "--task", "complete", "--data", "builtin:nextline",
                 "--limit", "12", "--quiet", "--resamples", "100"]) == 0
    r = json.loads((run_dir / "eval.json").read_text())["complete:builtin:nextline"]
    assert r["n"] == 12 and r["norm"] == "byte" and set(r["accuracy_by_norm"]) == {
        "none", "token", "byte"}


@pytest.mark.parametrize("args, message", [
    (["eval", "{tmp}", "--task", "ppl"], "not a run folder (no config.json)"),
    (["eval", "{tmp}/missing", "--task", "ppl"], "no such run folder"),
    (["eval", "{run}", "--task", "mc", "--data", "{tmp}/bad_test.csv"],
     "bad_test.csv:2: expected 6 columns"),
    (["eval", "{run}", "--task", "mc", "--data", "{tmp}/wrong_test.csv"],
     "wrong_test.csv:1: answer 'Z' is not one of A, B, C, D"),
    (["eval", "{run}", "--task", "mc", "--data", "{tmp}/empty_test.csv"], "empty file"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, args, message):
    (tmp_path / "bad_test.csv").write_text("q,a,b,c,d,A\nq,a,b,c,A\n")
    (tmp_path / "wrong_test.csv").write_text("q,a,b,c,d,Z\n")
    (tmp_path / "empty_test.csv").write_text("")
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
