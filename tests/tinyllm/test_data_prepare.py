"""The whole pipeline (`prepare`) and the ``tinyllm prepare`` command."""

import json

import numpy as np
import pytest

from tinyllm.data.clean import normalize
from tinyllm.data.corpus import SplitPlan
from tinyllm.data.dataset import BatchLoader, read_tokens
from tinyllm.data.prepare import EOT, EmptyCorpusError, prepare


class ByteTokenizer:
    """A stand-in with the `BPETokenizer` methods prepare uses: one token per UTF-8 byte."""

    def __init__(self, special_tokens=None):
        self.special_tokens = {EOT: 256} if special_tokens is None else special_tokens
        self.vocab_size = 257

    def encode_ordinary(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8")

    def save(self, path):
        with open(path, "w") as f:
            json.dump({"kind": "bytes"}, f)


WORDS = ("the quick brown fox jumps over lazy dog while seven wizards quietly judge boxing "
         "matches near old river banks under pale moon light and every cat sleeps").split()


def sentence(i):
    """A distinct paragraph of 80 ordinary words, the same for the same `i`."""
    words = np.random.default_rng(i).choice(WORDS, 80)
    return f"Paragraph {i}: " + " ".join(words) + "."


def documents_of(tokens, eot=256):
    """Split a token array at the end-of-text token; decode each document."""
    docs, current = [], []
    for t in tokens.tolist():
        if t == eot:
            docs.append(bytes(current).decode("utf-8"))
            current = []
        else:
            current.append(t)
    assert current == []  # the file ends with an end-of-text token
    return docs


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "web").mkdir(parents=True)
    good = [sentence(i) for i in range(12)]
    for i, text in enumerate(good[:6]):
        (root / f"doc{i:02d}.txt").write_text(text)
    (root / "web" / "page.html").write_text(f"<p>{good[6]}</p><script>evil()</script>")
    lines = [json.dumps({"text": t}) for t in good[7:]]
    lines.append(json.dumps({"text": good[0]}))  # exact duplicate of doc00.txt
    lines.append(json.dumps({"text": good[1].replace(" ", " moon ", 1)}))  # near duplicate
    lines.append(json.dumps({"text": "too short"}))
    lines.append("{broken json")
    (root / "web" / "more.jsonl").write_text("\n".join(lines) + "\n")
    (root / "zz_dangling.txt").symlink_to(root / "missing.txt")
    return root, good


def test_prepare_end_to_end_with_stand_in_tokenizer(tmp_path, corpus):
    root, good = corpus
    out = tmp_path / "out"
    summary = prepare([root], out, tokenizer=ByteTokenizer(), val_fraction=0.25,
                      test_fraction=0.1, progress=False)  # fmt: skip

    # Order: doc00..doc05.txt, then web/more.jsonl, then web/page.html (sorted walk).
    expected = [normalize(t) for t in good[:6] + good[7:] + [good[6]]]
    plan = SplitPlan(len(expected), 0.25, 0.1)
    by_split = {s: [d for i, d in enumerate(expected) if plan(i) == s] for s in plan.SPLITS}
    assert all(by_split.values())  # each split has documents
    for split, docs in by_split.items():
        assert documents_of(read_tokens(out / f"{split}.bin")) == docs

    meta = json.loads((out / "meta.json").read_text())
    assert meta["dtype"] == "uint16"
    assert meta["tokenizer"]["eot_id"] == 256 and not meta["tokenizer"]["trained"]
    assert meta["counts"]["train"]["docs"] == len(by_split["train"])
    assert meta["counts"]["val"]["tokens"] == len(read_tokens(out / "val.bin"))
    cleaning = meta["cleaning"]
    assert cleaning["docs_kept"] == 12
    assert cleaning["dropped"]["exact_duplicate"]["docs"] == 1
    assert cleaning["dropped"]["near_duplicate"]["docs"] == 1
    assert cleaning["dropped"]["too_short"] == {"docs": 1, "bytes": 9}
    skipped = {s["path"].rsplit("/", 1)[-1] for s in cleaning["skipped_files"]}
    assert skipped == {"more.jsonl", "zz_dangling.txt"}  # the bad line, the dangling link
    assert meta["sources"] == [str(root)]
    assert (out / "tokenizer.json").exists()
    assert not list(out.glob("*.tmp"))  # the temporary file is gone
    assert summary["timings"]["clean_s"] > 0

    # The loader reads what prepare wrote.
    x, y = BatchLoader(read_tokens(out / "train.bin"), 2, 16, seed=0).next_batch()
    assert x.shape == (2, 16)


def test_prepare_is_deterministic(tmp_path, corpus):
    root, _ = corpus
    for name in ("a", "b"):
        prepare([root], tmp_path / name, tokenizer=ByteTokenizer(), progress=False)
    for f in ("train.bin", "val.bin", "test.bin"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_empty_corpus_is_an_error_that_shows_the_report(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("tiny")
    (tmp_path / "in" / "b.txt").write_text("1 2 3 4 5 6 7 8 9 " * 20)
    with pytest.raises(EmptyCorpusError) as info:
        prepare([tmp_path / "in"], tmp_path / "out", tokenizer=ByteTokenizer(), progress=False)
    message = str(info.value)
    assert "too_short" in message and "too_few_letters" in message
    assert isinstance(info.value, ValueError)


def test_tokenizer_without_end_of_text_is_refused(tmp_path, corpus):
    root, _ = corpus
    with pytest.raises(ValueError, match="endoftext"):
        prepare([root], tmp_path / "out", tokenizer=ByteTokenizer({}), progress=False)


def test_missing_input_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        prepare([tmp_path / "nope"], tmp_path / "out", tokenizer=ByteTokenizer(), progress=False)


def test_builtin_input_and_literal_end_of_text_in_a_document(tmp_path):
    (tmp_path / "in.txt").write_text(sentence(1) + EOT + " is only text here. " + sentence(2))
    prepare(["builtin:pydoc", tmp_path / "in.txt"], tmp_path / "out", tokenizer=ByteTokenizer(),
            progress=False)  # fmt: skip
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["cleaning"]["docs_kept"] > 70
    tokens = np.concatenate([read_tokens(tmp_path / "out" / f)
                             for f in ("train.bin", "val.bin", "test.bin")])  # fmt: skip
    # Exactly one end-of-text token per kept document: the literal string was encoded as text.
    assert int((tokens == 256).sum()) == meta["cleaning"]["docs_kept"]


# --------------------------------------------------------------------------------------------
# With the real tokenizer, and through the command line
# --------------------------------------------------------------------------------------------


def test_prepare_trains_a_tokenizer_and_cli_reuses_it(tmp_path, corpus, capsys):
    from tinyllm.cli import main
    from tinyllm.tokenizer import BPETokenizer

    root, _ = corpus
    summary = prepare([root], tmp_path / "a", vocab_size=300, progress=False)
    assert summary["tokenizer"]["trained"] and summary["tokenizer"]["vocab_size"] == 300
    tok = BPETokenizer.load(tmp_path / "a" / "tokenizer.json")
    eot = tok.special_tokens[EOT]
    train = read_tokens(tmp_path / "a" / "train.bin")
    first = train[: int(np.flatnonzero(train == eot)[0])]
    assert tok.decode(first.tolist()) == normalize(sentence(0))

    code = main(["prepare", "--input", str(root), "--tokenizer", str(tmp_path / "a" /
                 "tokenizer.json"), "--out", str(tmp_path / "b"), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr()
    assert "train.bin" in printed.out and "near_duplicate" in printed.out
    assert "unreadable" in printed.err
    for f in ("train.bin", "val.bin"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_cli_empty_corpus_exit_code(tmp_path, capsys):
    from tinyllm.cli import main

    (tmp_path / "a.txt").write_text("tiny")
    code = main(["prepare", "-i", str(tmp_path / "a.txt"), "-o", str(tmp_path / "out"), "-q"])
    assert code == 1
    assert "too_short" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Warnings and logs (issue 11, items 14 and 15)
# --------------------------------------------------------------------------------------------


def test_small_corpus_warns_before_training_and_says_how_many_merges(tmp_path, capsys):
    from tinyllm.tokenizer import BPETokenizer

    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"{i}.txt").write_text("\n\n".join(sentence(10 * i + j)
                                                              for j in range(5)))
    events = []
    real_train = BPETokenizer.train

    def train(*args, **kw):
        events.append(("train", capsys.readouterr().err))  # what was printed before training
        return real_train(*args, **kw)

    BPETokenizer.train = train
    try:
        summary = prepare([tmp_path / "in"], tmp_path / "out", vocab_size=4096, progress=False)
    finally:
        BPETokenizer.train = real_train
    before = events[0][1]
    assert "only 3 document(s)" in before
    assert "is small for a 4,096-token vocabulary" in before
    merges = len(BPETokenizer.load(tmp_path / "out" / "tokenizer.json").merges)
    after = capsys.readouterr().err
    assert f"stopped after {merges:,} of 3,839 merges" in after
    assert len(summary["warnings"]) == 3


def test_progress_in_a_log_file_is_plain_lines(tmp_path, corpus, capsys):
    root, _ = corpus
    prepare([root], tmp_path / "out", vocab_size=300, progress=True)
    err = capsys.readouterr().err  # captured: not a terminal, as when logging to a file
    assert "\r" not in err
    assert "tokenizing" in err and "kept 12 of" in err


@pytest.mark.parametrize("kw, message", [
    ({"vocab_size": 100}, "at least 257"),
    ({"pattern": "("}, "invalid split pattern"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "below 1"),
    ({"test_fraction": -0.1}, "must be in"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, corpus, kw, message, monkeypatch):
    import tinyllm.data.prepare as module

    root, _ = corpus
    monkeypatch.setattr(module, "_input_bytes", lambda *a: pytest.fail("work started"))
    with pytest.raises(ValueError, match=message):
        prepare([root], tmp_path / "out", progress=False, **kw)
    assert not (tmp_path / "out").exists()
