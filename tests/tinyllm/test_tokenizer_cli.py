"""``tinyllm tokenizer train | encode | decode``."""

import argparse
import ast
import io
import json
import pydoc_data.topics

import pytest

from tinyllm.tokenizer import BPETokenizer, cli


def run(argv) -> int:
    """Parse and run one ``tinyllm tokenizer ...`` command line, as `tinyllm.cli.main` does."""
    parser = argparse.ArgumentParser(prog="tinyllm")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture()
def corpus(tmp_path):
    paths = []
    for i, name in enumerate(["for", "while"]):
        path = tmp_path / f"doc{i}.txt"
        path.write_text(pydoc_data.topics.topics[name] + "\n东京 🎉\n", encoding="utf-8")
        paths.append(str(path))
    return paths


def test_train_encode_decode(tmp_path, corpus, capsys):
    out = tmp_path / "tok.json"
    assert run(["tokenizer", "train", "--input", *corpus, "--vocab-size", "400", "--out",
                str(out), "--no-progress", "--hf-out", str(tmp_path / "tokenizer.json")]) == 0
    printed = capsys.readouterr().out
    assert "bytes per token" in printed and "vocab_size 400" in printed
    tok = BPETokenizer.load(out)
    assert tok.vocab_size == 400 and tok.special_tokens == {"<|endoftext|>": 399}
    assert json.loads((tmp_path / "tokenizer.json").read_text())["model"]["type"] == "BPE"

    assert run(["tokenizer", "encode", "--tokenizer", str(out), "for x in y<|endoftext|>"]) == 0
    captured = capsys.readouterr()
    ids = [int(w) for w in captured.out.split()]
    assert ids == tok.encode("for x in y<|endoftext|>", allowed_special="all")
    assert "bytes per token" in captured.err

    assert run(["tokenizer", "decode", "--tokenizer", str(out), *map(str, ids)]) == 0
    assert capsys.readouterr().out == "for x in y<|endoftext|>\n"

    assert run(["tokenizer", "encode", "--tokenizer", str(out), "--show", "for x"]) == 0
    rows = [line.split(None, 1) for line in capsys.readouterr().out.splitlines()]
    assert [int(i) for i, _ in rows] == tok.encode("for x")  # one token per line, with bytes
    assert b"".join(ast.literal_eval(data) for _, data in rows) == b"for x"


def test_train_with_progress_bar(tmp_path, corpus, capsys):
    pytest.importorskip("tqdm")
    out = tmp_path / "tok.json"
    assert run(["tokenizer", "train", "--input", corpus[0], "--vocab-size", "300",
                "--out", str(out), "--special-tokens"]) == 0
    assert "merges" in capsys.readouterr().err
    assert BPETokenizer.load(out).special_tokens == {}


def test_encode_from_file_and_decode_from_stdin(tmp_path, corpus, capsys, monkeypatch):
    out = tmp_path / "tok.json"
    run(["tokenizer", "train", "--input", *corpus, "--vocab-size", "300", "--out", str(out),
         "--no-progress"])
    capsys.readouterr()
    run(["tokenizer", "encode", "--tokenizer", str(out), "--input", corpus[0]])
    ids = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(ids))
    run(["tokenizer", "decode", "--tokenizer", str(out)])
    assert capsys.readouterr().out == open(corpus[0], encoding="utf-8").read() + "\n"


def test_errors(tmp_path, capsys):
    assert run(["tokenizer"]) == 2  # no action: help
    with pytest.raises(FileNotFoundError):
        run(["tokenizer", "decode", "--tokenizer", str(tmp_path / "missing.json"), "1"])
    BPETokenizer.train("abc", 260).save(tmp_path / "tok.json")
    with pytest.raises(ValueError, match="must be integers"):
        run(["tokenizer", "decode", "--tokenizer", str(tmp_path / "tok.json"), "x"])
