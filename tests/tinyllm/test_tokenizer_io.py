"""Tokenizer files: save/load identity, GPT-2 and tiktoken formats, HF export, corrupt files."""

import base64
import functools
import json
import pydoc_data.topics

import pytest

from tinyllm.tokenizer import BPETokenizer
from tinyllm.tokenizer.io import TokenizerFileError, bytes_to_unicode

SAMPLE = "Hello world! The tokenizer's test: naïve café, 東京 🎉\r\n\tdef f(x):\n    return 42\n"


@functools.cache
def trained(pattern="gpt4") -> BPETokenizer:
    text = pydoc_data.topics.topics["for"] + pydoc_data.topics.topics["with"] + SAMPLE * 3
    return BPETokenizer.train(text, 500, pattern=pattern, special_tokens=["<|endoftext|>"])


def assert_same_tokenizer(a: BPETokenizer, b: BPETokenizer):
    assert a.merges == b.merges and list(a.merges) == list(b.merges)
    assert a.vocab == b.vocab
    assert a.special_tokens == b.special_tokens
    assert a.pattern == b.pattern and a.vocab_size == b.vocab_size
    text = SAMPLE + "<|endoftext|>"
    assert a.encode(text, allowed_special="all") == b.encode(text, allowed_special="all")


# --- tinyllm JSON -----------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", r"\w+|\s+|[^\w\s]+"])
def test_save_load_identity(tmp_path, pattern):
    tok = trained(pattern)
    tok.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(tmp_path / "tok.json")
    assert_same_tokenizer(tok, loaded)
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == (tmp_path / "tok.json").read_text()


def test_saved_file_is_documented_json(tmp_path):
    trained().save(tmp_path / "tok.json")
    data = json.loads((tmp_path / "tok.json").read_text())
    assert data["format"] == "tinyllm-bpe" and data["version"] == 1
    assert data["pattern_name"] == "gpt4" and data["vocab_size"] == 500
    assert data["special_tokens"] == {"<|endoftext|>": 499}
    assert data["merges"][0][2] == 256 and len(data["merges"]) == 243


def corrupt(tmp_path, old, new, count=1):
    trained().save(tmp_path / "tok.json")
    text = (tmp_path / "tok.json").read_text()
    assert old in text
    (tmp_path / "bad.json").write_text(text.replace(old, new, count))
    return tmp_path / "bad.json", text


def line_of(text, needle):
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_corrupt_json_names_file_and_line(tmp_path):
    path, _ = corrupt(tmp_path, '"version": 1,', '"version": 1')  # a missing comma
    with pytest.raises(TokenizerFileError, match=r"bad\.json, line 4: invalid JSON"):
        BPETokenizer.load(path)


def test_inconsistent_merge_names_its_line(tmp_path):
    trained().save(tmp_path / "tok.json")
    lines = (tmp_path / "tok.json").read_text().splitlines()
    k = lines.index('  "merges": [') + 1 + 10  # merge 10
    lines[k] = "    [1, 9999, 266],"
    (tmp_path / "bad.json").write_text("\n".join(lines))
    with pytest.raises(TokenizerFileError, match=f"line {k + 1}: merge 10 .* uses id 9999"):
        BPETokenizer.load(tmp_path / "bad.json")
    lines[k] = "    [1, 2],"
    (tmp_path / "bad.json").write_text("\n".join(lines))
    with pytest.raises(TokenizerFileError, match=f"line {k + 1}: merge 10 must be"):
        BPETokenizer.load(tmp_path / "bad.json")


@pytest.mark.parametrize("old,new,message", [
    ('"version": 1', '"version": 2', "version 2 is not supported"),
    ('"format": "tinyllm-bpe"', '"format": "other"', "not a tinyllm tokenizer file"),
    ('"vocab_size": 500', '"vocab_size": 501', '"vocab_size" is 501'),
    ('"pattern_name": "gpt4"', '"pattern_name": "gpt2"', "does not match"),
    ('{"<|endoftext|>": 499}', '{"<|endoftext|>": 300}', "already taken"),
    ('"merges": [', '"merges_": [', 'missing key "merges"'),
])
def test_inconsistent_files_are_rejected(tmp_path, old, new, message):
    path, _ = corrupt(tmp_path, old, new)
    with pytest.raises(TokenizerFileError, match=message):
        BPETokenizer.load(path)


def test_not_utf8_and_missing_files(tmp_path):
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(TokenizerFileError, match="not UTF-8"):
        BPETokenizer.load(tmp_path / "bin.json")
    with pytest.raises(TokenizerFileError, match="missing.json: cannot be read"):
        BPETokenizer.load(tmp_path / "missing.json")


# --- GPT-2 vocab.json + merges.txt ------------------------------------------------------------
def write_gpt2_pair(tmp_path, merges_lines=None, drop_byte=None):
    """A hand-made GPT-2-style pair: the 256 bytes in GPT-2's order (id 0 is '!'), three merges
    (" t", "he", " the") and <|endoftext|>."""
    table = bytes_to_unicode()
    chars = list(table.values())  # GPT-2's vocab lists the byte characters in this order
    vocab = {ch: i for i, ch in enumerate(chars)}
    if drop_byte is not None:
        del vocab[table[drop_byte]]
    vocab.update({"Ġt": 256, "he": 257, "Ġthe": 258, "<|endoftext|>": 259})
    if merges_lines is None:
        merges_lines = ["Ġ t", "h e", "Ġt he"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges_lines) + "\n",
                                         encoding="utf-8")
    return tmp_path / "vocab.json", tmp_path / "merges.txt"


def test_gpt2_files_load(tmp_path):
    tok = BPETokenizer.from_gpt2_files(*write_gpt2_pair(tmp_path))
    table = bytes_to_unicode()
    assert tok.byte_ids[ord("!")] == 0 and tok.byte_ids[ord(" ")] == list(table).index(32)
    assert tok.merges == {(tok.byte_ids[32], tok.byte_ids[ord("t")]): 256,
                          (tok.byte_ids[ord("h")], tok.byte_ids[ord("e")]): 257,
                          (256, 257): 258}
    assert tok.special_tokens == {"<|endoftext|>": 259}
    assert tok.vocab[258] == b" the" and tok.vocab_size == 260
    ids = tok.encode("in the hat<|endoftext|>", allowed_special="all")
    assert 258 in ids and ids[-1] == 259
    assert tok.decode(ids) == "in the hat<|endoftext|>"
    assert tok.encode("!") == [0]


def test_gpt2_files_round_trip(tmp_path):
    tok = trained("gpt2")
    tok.save_gpt2_files(tmp_path / "v.json", tmp_path / "m.txt")
    loaded = BPETokenizer.from_gpt2_files(tmp_path / "v.json", tmp_path / "m.txt")
    assert_same_tokenizer(tok, loaded)


@pytest.mark.parametrize("lines,line_no,message", [
    (["Ġ t", "h e x"], 3, "two tokens separated by one space"),
    (["Ġ t", "h ☃"], 3, "token '☃' is not in"),
    (["Ġ t", "e h"], 3, "merged token 'eh' is not in"),
    (["Ġ t", "Ġ t"], 3, "repeated"),
    (["Ġt he", "Ġ t", "h e"], 2, "uses id 256, which no byte or earlier merge makes"),
])
def test_gpt2_corrupt_merges_name_the_line(tmp_path, lines, line_no, message):
    vocab_path, merges_path = write_gpt2_pair(tmp_path, lines)
    with pytest.raises(TokenizerFileError, match=f"merges.txt, line {line_no}: .*{message}"):
        BPETokenizer.from_gpt2_files(vocab_path, merges_path)


def test_gpt2_corrupt_vocab(tmp_path):
    vocab_path, merges_path = write_gpt2_pair(tmp_path, drop_byte=ord("a"))
    with pytest.raises(TokenizerFileError, match="vocab.json: no token for byte 0x61"):
        BPETokenizer.from_gpt2_files(vocab_path, merges_path)
    vocab_path.write_text('{"a": 1,\n "b": }')
    with pytest.raises(TokenizerFileError, match="vocab.json, line 2: invalid JSON"):
        BPETokenizer.from_gpt2_files(vocab_path, merges_path)


# --- tiktoken rank files ----------------------------------------------------------------------
def test_tiktoken_file_round_trip(tmp_path):
    tok = trained()
    tok.save_tiktoken_file(tmp_path / "ranks.tiktoken")
    loaded = BPETokenizer.from_tiktoken_file(tmp_path / "ranks.tiktoken", "gpt4",
                                             tok.special_tokens)
    assert_same_tokenizer(tok, loaded)


def test_tiktoken_file_read_by_tiktoken(tmp_path):
    load = pytest.importorskip("tiktoken.load")
    tok = trained()
    tok.save_tiktoken_file(tmp_path / "ranks.tiktoken")
    ranks = load.load_tiktoken_bpe(str(tmp_path / "ranks.tiktoken"))
    assert ranks == {data: i for i, data in tok.vocab.items()}


def test_tiktoken_corrupt_files_name_the_line(tmp_path):
    good = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    path = tmp_path / "r.tiktoken"
    cases = [
        (good + ["!!notbase64 256"], "line 257: bad base64"),
        (good + [f"{base64.b64encode(b'ab').decode()} 5"], "line 257: rank 5 repeated"),
        (good + [f"{base64.b64encode(b'ab').decode()}"], "line 257: expected"),
        (good[:10] + good[11:], "no token for the single byte 0x0a"),
        (good + [f"{base64.b64encode(b'abc').decode()} 256"], "line 257: token b'abc'"),
    ]
    for lines, message in cases:
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(TokenizerFileError, match=message):
            BPETokenizer.from_tiktoken_file(path)


# --- HF tokenizers export ---------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_hf_tokenizer_json_encodes_the_same(tmp_path, pattern):
    tokenizers = pytest.importorskip("tokenizers")
    tok = trained(pattern)
    tok.save_hf(tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in [SAMPLE, pydoc_data.topics.topics["if"], "  x\n\n\n  y 🎉<|endoftext|>z", ""]:
        ids = tok.encode(text, allowed_special="all")
        assert hf.encode(text).ids == ids
        assert hf.decode(ids, skip_special_tokens=False) == text
