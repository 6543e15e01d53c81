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
    with pytest.raises(ValueError, match="missing.json"):
        run(["tokenizer", "decode", "--tokenizer", str(tmp_path / "missing.json"), "1"])
    BPETokenizer.train("abc", 260).save(tmp_path / "tok.json")
    with pytest.raises(ValueError, match="must be integers"):
        run(["tokenizer", "decode", "--tokenizer", str(tmp_path / "tok.json"), "x"])


# --- folders, cleaning and warnings (issue 11, items 8 and 14) ----------------------------------
def test_train_reads_folders_and_cleans_html_like_prepare(tmp_path, capsys):
    root = tmp_path / "my_texts"
    (root / "web").mkdir(parents=True)
    prose = pydoc_data.topics.topics["for"]
    (root / "a.txt").write_text(prose)
    (root / "b.md").write_text(pydoc_data.topics.topics["while"])
    script = "zqxjzqxj(); " * 200
    (root / "web" / "page.html").write_text(
        f"<html><script>{script}</script><p>{prose[:2000]}</p><!-- zqxjzqxj --></html>")
    (root / "notes.jsonl").write_text(json.dumps({"text": "caf\u00e9\u00a0latte " * 50}) + "\n")
    out = tmp_path / "tok.json"
    assert run(["tokenizer", "train", "--input", str(root), "--vocab-size", "600", "--out",
                str(out), "--no-progress"]) == 0
    assert "read 4 document(s)" in capsys.readouterr().out
    tok = BPETokenizer.load(out)
    learned = [tok.token_to_bytes(i) for i in range(tok.vocab_size - 1)]
    assert not any(b"zqxj" in t for t in learned)  # the script never reached training
    assert not any("\u00a0".encode() in t for t in learned)  # normalised like prepare
    assert any(t == " latte" for t in (x.decode("utf-8", "replace") for x in learned))


def test_train_warns_early_when_the_text_is_small_for_the_vocabulary(tmp_path, capsys):
    (tmp_path / "small.txt").write_text(pydoc_data.topics.topics["pass"])
    out = tmp_path / "tok.json"
    assert run(["tokenizer", "train", "--input", str(tmp_path), "--vocab-size", "4096",
                "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    size, shortfall = err.index("is small for a 4,096-token vocabulary"), err.index("stopped after")
    assert size < shortfall
    merges = len(BPETokenizer.load(out).merges)
    assert f"stopped after {merges:,} of 3,839 merges" in err


def test_train_on_a_folder_without_text_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no text found"):
        run(["tokenizer", "train", "--input", str(tmp_path / "empty"), "--vocab-size", "300",
             "--out", str(tmp_path / "tok.json"), "--no-progress"])
