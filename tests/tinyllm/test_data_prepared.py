"""The prepared folder: atomic output, the completion marker, provenance and its check."""

import json
import os

import numpy as np
import pytest

from tinyllm.data.dataset import DataFileError, TokenWriter, read_header, read_tokens
from tinyllm.data.prepare import EOT, prepare
from tinyllm.data.prepared import (
    PreparedFolderError,
    check_prepared,
    load_prepared,
    provenance,
    read_meta,
    tokenizer_sha256,
)
from tinyllm.tokenizer import BPETokenizer

WORDS = ("the quick brown fox jumps over lazy dog while seven wizards quietly judge boxing "
         "matches near old river banks under pale moon light and every cat sleeps").split()


def paragraph(i, n=60):
    words = np.random.default_rng(i).choice(WORDS, n)
    return f"Paragraph {i}: " + " ".join(words) + "."


@pytest.fixture(scope="module")
def tokenizer():
    text = " ".join(paragraph(i) for i in range(5))
    return BPETokenizer.train(text, 300, special_tokens=[EOT])


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(24):
        (root / f"doc{i:02d}.txt").write_text(paragraph(i))
    return root


def run(corpus, out, tokenizer, **kw):
    return prepare([corpus], out, tokenizer=tokenizer, progress=False, **kw)


class Boom(RuntimeError):
    pass


def failing_tokenizer(tok, fail_at):
    """A tokenizer that raises on its `fail_at`-th encode (an interrupt in the middle)."""

    class Failing(BPETokenizer):
        calls = 0

        def encode_ordinary(self, text):
            Failing.calls += 1
            if Failing.calls == fail_at:
                raise Boom("interrupted")
            return super().encode_ordinary(text)

    return Failing(tok.merges, tok.pattern, tok.special_tokens)


# --------------------------------------------------------------------------------------------
# Atomic output and the completion marker (issue 11, item 3)
# --------------------------------------------------------------------------------------------


def test_interrupted_prepare_leaves_nothing_under_the_final_name(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    with pytest.raises(Boom):
        run(corpus, out, failing_tokenizer(tokenizer, fail_at=10), batch_bytes=100)
    assert not out.exists()
    assert os.listdir(tmp_path) == ["corpus"]  # no temporary folder left behind either


def test_interrupted_prepare_keeps_the_previous_folder(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (corpus / "doc00.txt").write_text(paragraph(100))
    with pytest.raises(Boom):
        run(corpus, out, failing_tokenizer(tokenizer, fail_at=20), batch_bytes=100)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    load_prepared(out)  # still whole
    assert sorted(os.listdir(tmp_path)) == ["corpus", "data"]


def test_a_second_prepare_replaces_the_first(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    first = read_tokens(out / "train.bin").copy()
    (corpus / "doc00.txt").write_text(paragraph(100))
    run(corpus, out, tokenizer)
    assert not np.array_equal(read_tokens(out / "train.bin"), first)
    assert sorted(os.listdir(tmp_path)) == ["corpus", "data"]


def test_prepare_refuses_to_replace_a_folder_of_other_files(tmp_path, corpus, tokenizer):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="notes.txt"):
        run(corpus, out, tokenizer)
    assert (out / "notes.txt").read_text() == "precious"


def test_a_killed_prepare_s_temporary_folder_is_cleaned_up(tmp_path, corpus, tokenizer):
    stale = tmp_path / ".data.preparing-999999999"  # no such process
    stale.mkdir()
    (stale / "train.bin").write_bytes(b"junk")
    run(corpus, tmp_path / "data", tokenizer)
    assert not stale.exists()


def test_readers_refuse_a_folder_without_the_marker(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is True
    del meta["complete"]
    (out / "meta.json").write_text(json.dumps(meta))
    for reader in (lambda: read_tokens(out / "train.bin"), lambda: read_header(out / "val.bin"),
                   lambda: load_prepared(out), lambda: read_meta(out)):
        with pytest.raises(PreparedFolderError, match="incomplete") as info:
            reader()
        assert str(out / "meta.json") in str(info.value)
        assert "\n" not in str(info.value)


def test_an_older_prepared_folder_is_refused(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    meta = json.loads((out / "meta.json").read_text())
    meta["version"] = 1
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PreparedFolderError, match="version 1"):
        load_prepared(out)


def test_a_folder_without_meta_is_not_a_prepared_folder(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    (out / "meta.json").unlink()
    with pytest.raises(PreparedFolderError, match="no meta.json"):
        load_prepared(out)


def test_a_partial_token_file_left_by_a_killed_writer_is_refused(tmp_path):
    writer = TokenWriter(tmp_path / "t.bin", 300)
    writer.write(np.arange(100))
    writer._file.flush()  # the process dies here: no close, no rename
    assert not (tmp_path / "t.bin").exists()
    with pytest.raises(DataFileError, match="incomplete"):
        read_tokens(writer.partial_path)
    writer.abort()
    assert not writer.partial_path.exists()


def test_token_writer_deletes_its_file_on_an_exception(tmp_path):
    with pytest.raises(Boom):
        with TokenWriter(tmp_path / "t.bin", 300) as writer:
            writer.write([1, 2, 3])
            raise Boom
    assert os.listdir(tmp_path) == []


def test_load_prepared_checks_counts_against_meta(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    data = load_prepared(out)
    assert data.tokenizer.vocab_size == tokenizer.vocab_size
    for split in ("train", "val", "test"):
        assert len(getattr(data, split)) == data.meta["counts"][split]["tokens"] > 0
    meta = json.loads((out / "meta.json").read_text())
    meta["counts"]["val"]["tokens"] += 1
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PreparedFolderError, match="val.bin"):
        load_prepared(out)


# --------------------------------------------------------------------------------------------
# Provenance (issue 11, item 1)
# --------------------------------------------------------------------------------------------


def test_meta_records_what_the_folder_was_made_from(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    meta = read_meta(out)
    source = meta["provenance"]["sources"][0]
    assert source["spec"] == str(corpus.absolute())
    assert source["files"] == 24
    assert source["bytes"] == sum(p.stat().st_size for p in corpus.iterdir())
    assert meta["provenance"]["tokenizer"]["sha256"] == tokenizer_sha256(tokenizer)
    assert meta["tokenizer"]["sha256"] == tokenizer_sha256(out / "tokenizer.json")
    assert meta["provenance"]["cleaning"]["filters"]["min_chars"] == 100


def test_check_prepared_is_empty_for_the_same_request(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    assert check_prepared(out, provenance([corpus], tokenizer=tokenizer)) == []
    # the same tokenizer, given as a saved file, is the same tokenizer
    tokenizer.save(tmp_path / "tok.json")
    assert check_prepared(out, provenance([corpus], tokenizer=tmp_path / "tok.json")) == []


def test_check_prepared_names_each_difference(tmp_path, corpus, tokenizer):
    from tinyllm.data.clean import FilterConfig

    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    other = BPETokenizer.train(paragraph(7) * 3, 290, special_tokens=[EOT])
    cases = {
        "sources: prepared from": provenance(["builtin:pydoc"], tokenizer=tokenizer),
        "tokenizer: prepared with tokenizer sha256": provenance([corpus], tokenizer=other),
        "now one is trained": provenance([corpus], vocab_size=512),
        "cleaning filters min_chars": provenance([corpus], tokenizer=tokenizer,
                                                 filters=FilterConfig(min_chars=5)),
        "splits test_fraction": provenance([corpus], tokenizer=tokenizer, test_fraction=0.2),
    }
    for needle, expected in cases.items():
        differences = check_prepared(out, expected)
        assert len(differences) == 1 and needle in differences[0], (needle, differences)


def test_check_prepared_sees_a_changed_input_file(tmp_path, corpus, tokenizer):
    out = tmp_path / "data"
    run(corpus, out, tokenizer)
    (corpus / "doc03.txt").write_text(paragraph(3) + " More text.")
    differences = check_prepared(out, provenance([corpus], tokenizer=tokenizer))
    assert len(differences) == 1 and "changed since it was prepared" in differences[0]


def test_check_prepared_compares_the_requested_vocab_size(tmp_path, corpus):
    out = tmp_path / "data"
    prepare([corpus], out, vocab_size=300, progress=False)
    assert check_prepared(out, provenance([corpus], vocab_size=300)) == []
    assert check_prepared(out, provenance([corpus], vocab_size=400)) == [
        "tokenizer vocab_size: prepared with 300, now 400"]


def test_check_prepared_on_a_missing_or_broken_folder_says_so_in_one_line(tmp_path, corpus):
    expected = provenance([corpus])
    [line] = check_prepared(tmp_path / "nothing", expected)
    assert "no meta.json" in line
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "meta.json").write_text("{not json")
    [line] = check_prepared(tmp_path / "broken", expected)
    assert "not valid JSON" in line and "meta.json" in line
