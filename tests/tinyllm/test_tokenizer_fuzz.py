"""Fuzzing the tokenizer file readers: tinyllm JSON, GPT-2 vocab.json + merges.txt, tiktoken
rank files. The method is that of `test_data_fuzz`: each spoilt file is either read (and then
the tokenizer round-trips text) or refused with a `TokenizerFileError` (a ValueError) whose
one-line message names the file; any other exception, a hang or a memory blow-up fails."""

import json
import os
import tempfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.tinyllm.test_data_fuzz import (
    FAST,
    SLOW,
    expect_clean_refusal,
    odd_paths,
    report,
    slow,
    spoil,
    spoil_json,
)
from tinyllm.tokenizer import BPETokenizer
from tinyllm.tokenizer.io import TokenizerFileError

SAMPLE = "Hello world! The 3 quick foxes, café 東京 🎉\n  indented()\n"


@cache
def base_files() -> dict[str, bytes]:
    """A small trained tokenizer saved in each format: {file name: bytes}."""
    text = " ".join(["the quick brown fox jumps over the lazy dog 12345 café"] * 20)
    tok = BPETokenizer.train(text, 320, special_tokens=["<|endoftext|>"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok.save(tmp / "tok.json")
        tok.save_gpt2_files(tmp / "vocab.json", tmp / "merges.txt")
        tok.save_tiktoken_file(tmp / "ranks.tiktoken")
        return {p.name: p.read_bytes() for p in tmp.iterdir()}


def _round_trips(tok):
    assert tok.decode(tok.encode_ordinary(SAMPLE)) == SAMPLE
    return tok


READERS = {
    "tok.json": lambda folder: BPETokenizer.load(folder / "tok.json"),
    "vocab.json": lambda folder: BPETokenizer.from_gpt2_files(folder / "vocab.json",
                                                              folder / "merges.txt"),
    "merges.txt": lambda folder: BPETokenizer.from_gpt2_files(folder / "vocab.json",
                                                              folder / "merges.txt"),
    "ranks.tiktoken": lambda folder: BPETokenizer.from_tiktoken_file(folder / "ranks.tiktoken"),
}


def _fuzz(data, target, name):
    files = base_files()
    raw = files[target]
    if target.endswith(".json") and data.draw(st.booleans()):
        spoilt = data.draw(spoil_json(raw))
    else:
        spoilt = data.draw(spoil(raw))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for file_name, content in files.items():
            (folder / file_name).write_bytes(spoilt if file_name == target else content)
        tok = expect_clean_refusal(name, READERS[target], folder, TokenizerFileError, folder)
        if tok is not None:
            _round_trips(tok)


@pytest.mark.parametrize("target", list(READERS))
@FAST
@given(data=st.data())
def test_fuzz_tokenizer_files(target, data):
    _fuzz(data, target, f"{target} (fast)")


@slow
@pytest.mark.parametrize("target", list(READERS))
@SLOW
@given(data=st.data())
def test_fuzz_tokenizer_files_long(target, data):
    _fuzz(data, target, target)


@slow
def test_print_fuzz_report():
    for name in READERS:
        report(name)


def test_tokenizer_readers_refuse_odd_paths(tmp_path):
    files = base_files()
    for path in odd_paths(tmp_path):
        with pytest.raises(TokenizerFileError, match=str(path)):
            BPETokenizer.load(path)
        with pytest.raises(TokenizerFileError, match=str(path)):
            BPETokenizer.from_tiktoken_file(path)
        (tmp_path / "merges.txt").write_bytes(files["merges.txt"])
        with pytest.raises(TokenizerFileError, match=str(path)):
            BPETokenizer.from_gpt2_files(path, tmp_path / "merges.txt")
    (tmp_path / "real.json").write_bytes(files["tok.json"])
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    _round_trips(BPETokenizer.load(tmp_path / "link.json"))  # a link to a good file is fine


def test_a_merge_chain_that_doubles_token_length_is_refused(tmp_path):
    # 64 merges, each joining the last token with itself: 2**64 bytes if built naively.
    merges = [[97, 97, 256]] + [[255 + k, 255 + k, 256 + k] for k in range(1, 64)]
    doc = {"format": "tinyllm-bpe", "version": 1, "pattern_name": "gpt4",
           "pattern": BPETokenizer().pattern, "special_tokens": {}, "merges": merges}
    (tmp_path / "bomb.json").write_text(json.dumps(doc))
    with pytest.raises(TokenizerFileError, match="bomb.json.*over the limits"):
        BPETokenizer.load(tmp_path / "bomb.json")


def test_deeply_nested_json_is_refused(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TokenizerFileError, match="deep.json.*nested too deeply"):
        BPETokenizer.load(tmp_path / "deep.json")
    assert os.path.exists(tmp_path / "deep.json")


def test_a_pattern_name_of_the_wrong_type_is_refused(tmp_path):
    # found by test_fuzz_tokenizer_files_long: a list as pattern_name raised TypeError
    doc = json.loads(base_files()["tok.json"])
    doc["pattern_name"] = []
    (tmp_path / "t.json").write_text(json.dumps(doc))
    with pytest.raises(TokenizerFileError, match="t.json.*pattern_name"):
        BPETokenizer.load(tmp_path / "t.json")
