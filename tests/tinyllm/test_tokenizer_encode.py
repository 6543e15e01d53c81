"""Encoding and decoding: round trips, the reference encoder, special tokens, the fast paths."""

import functools
import pickle
import pydoc_data.topics
import re

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from tinyllm.tokenizer import BPETokenizer
from tinyllm.tokenizer.patterns import (
    ASCII_PATTERNS,
    PATTERNS,
    SEGMENT_PATTERNS,
    make_split,
    make_split_long,
)
from tinyllm.tokenizer.train import merge_pair

SPECIALS = ["<|endoftext|>", "<|pad|>"]


def training_text() -> str:
    topics = pydoc_data.topics.topics
    return (topics["for"] + topics["while"] + topics["try"]
            + "def f(x):\n    return x  # naïve café 東京 🎉\n\r\n\t\n" * 3)


@functools.cache
def trained(pattern: str = "gpt4") -> BPETokenizer:
    return BPETokenizer.train(training_text(), 600, pattern=pattern, special_tokens=SPECIALS)


def fresh(pattern: str = "gpt4") -> BPETokenizer:
    """A new tokenizer with the trained tables and empty caches."""
    tok = trained(pattern)
    return BPETokenizer(tok.merges, tok.pattern, tok.special_tokens)


def encode_reference(tok: BPETokenizer, text: str) -> list[int]:
    """The textbook encoder: per chunk, merge the pair with the earliest merge, everywhere."""
    merges = tok.merges
    ids = []
    for chunk in regex.findall(tok.pattern, text):
        chunk_ids = list(chunk.encode("utf-8"))
        while len(chunk_ids) >= 2:
            pairs = set(zip(chunk_ids, chunk_ids[1:]))
            pair = min(pairs, key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            chunk_ids = merge_pair(chunk_ids, pair, merges[pair])
        ids += chunk_ids
    return ids


# Text that stresses the split: every kind of whitespace, newline runs, indentation,
# contractions, digits, emoji (with modifiers and ZWJ), CJK, combining marks, controls.
PIECES = [" ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x85",
          "\u2028", "\xa0", "\u3000", "a", "Ab", "word", " the", "'s", "'LL", "1", "12345", ".",
          "!=", "(", "_x", "é", "e\u0301", "東京", "🎉", "👍🏽", "👩\u200d💻", "\x00", "\x7f",
          "<|endoftext|>"[:5]]
any_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(PIECES), max_size=40).map("".join),
)
PATTERN_NAMES = st.sampled_from(["gpt2", "gpt4", "gpt4-v1"])


@given(text=any_text, pattern=PATTERN_NAMES)
def test_round_trip(text, pattern):
    tok = trained(pattern)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_round_trip_edge_cases():
    tok = trained()
    for text in ["", " ", "\r\n", " " * 1000, "\n" * 50 + "x", "a" * 5000, "🎉" * 100]:
        assert tok.decode(tok.encode(text)) == text


# Letters and spaces only: digits, punctuation and emoji match nothing in it.
LETTERS_ONLY = r" ?\p{L}+|\s+"


@given(text=any_text)
def test_a_custom_pattern_that_misses_characters_still_round_trips(text):
    """Text between the pattern's matches becomes chunks of its own, never lost (a pattern
    missing the digits once made encode drop every digit without a word)."""
    tok = BPETokenizer.train("the 3 quick foxes, 42 times!", 280, pattern=LETTERS_ONLY)
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("Hello world! The 3 quick foxes")) == "Hello world! The 3 quick foxes"


@given(text=any_text, pattern=PATTERN_NAMES)
def test_encode_equals_reference_encoder(text, pattern):
    tok = fresh(pattern)
    expected = encode_reference(tok, text)
    assert tok.encode(text) == expected  # cold caches
    assert tok.encode(text) == expected  # warm caches


def test_encode_equals_reference_on_real_text():
    tok = fresh()
    text = pydoc_data.topics.topics["class"]
    assert tok.encode(text) == encode_reference(tok, text)


def test_lone_surrogate_is_a_clear_error():
    tok = trained()
    with pytest.raises(ValueError, match=r"surrogate '\\ud800' \(U\+D800\) at index 3"):
        tok.encode("abc\ud800def")
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode_ordinary("\udfff")


@given(ids=st.lists(st.integers(0, 599), max_size=50))
def test_decoding_any_ids_never_crashes(ids):
    tok = trained()
    text = tok.decode(ids)  # invalid UTF-8 (a token cut mid-character) becomes U+FFFD
    assert isinstance(text, str)
    assert tok.decode_bytes(ids) == b"".join(tok.token_to_bytes(i) for i in ids)


def test_decoding_unknown_ids_is_a_clear_error():
    tok = trained()
    for bad in (600, -1, 10**9):
        with pytest.raises(ValueError, match=f"unknown token id {bad}"):
            tok.decode([1, bad])
    with pytest.raises(UnicodeDecodeError):
        tok.decode([0xE6], errors="strict")  # the first byte of a 3-byte character
    assert tok.decode([0xE6]) == "\ufffd"


def test_ids_are_bytes_then_merges_then_special_tokens():
    tok = trained()
    assert [tok.token_to_bytes(i) for i in range(256)] == [bytes([b]) for b in range(256)]
    for (a, b), z in tok.merges.items():
        assert tok.vocab[z] == tok.vocab[a] + tok.vocab[b]
    assert list(tok.merges.values()) == list(range(256, 598))
    assert tok.special_tokens == {"<|endoftext|>": 598, "<|pad|>": 599}


# --- special tokens ---------------------------------------------------------------------------
def test_special_tokens_disallowed_by_default():
    tok = trained()
    with pytest.raises(ValueError, match="special token '<|endoftext|>'"):
        tok.encode("hello<|endoftext|>")
    with pytest.raises(ValueError, match="not allowed"):
        tok.encode("<|pad|>", allowed_special={"<|endoftext|>"})


def test_special_tokens_allowed():
    tok = trained()
    ids = tok.encode("a<|endoftext|>b<|pad|><|endoftext|>", allowed_special="all")
    assert ids == [*tok.encode("a"), 598, *tok.encode("b"), 599, 598]
    assert tok.decode(ids) == "a<|endoftext|>b<|pad|><|endoftext|>"
    ids = tok.encode("x<|endoftext|><|pad|>", allowed_special={"<|endoftext|>"},
                     disallowed_special=())
    assert ids == [*tok.encode("x"), 598, *tok.encode_ordinary("<|pad|>")]


def test_special_tokens_as_ordinary_text():
    tok = trained()
    text = "a<|endoftext|>b"
    ids = tok.encode(text, allowed_special="none")
    assert ids == tok.encode_ordinary(text)
    assert 598 not in ids
    assert tok.decode(ids) == text


def test_special_token_arguments_are_checked():
    tok = trained()
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="wrap one token in a set"):
        tok.encode("x", allowed_special="<|endoftext|>")


def test_longest_special_token_wins():
    tok = BPETokenizer({}, "gpt4", {"<|end|>": 256, "<|endoftext|>": 257})
    assert tok.encode("<|endoftext|><|end|>", allowed_special="all") == [257, 256]


@given(text=st.lists(st.sampled_from(PIECES + SPECIALS), max_size=30).map("".join))
def test_round_trip_with_special_tokens(text):
    tok = trained()
    assert tok.decode(tok.encode(text, allowed_special="all")) == text
    assert tok.decode(tok.encode(text, allowed_special="none")) == text


# --- the fast paths equal the plain split --------------------------------------------------------
@given(text=st.lists(st.sampled_from(PIECES), max_size=40).map("".join), pattern=PATTERN_NAMES)
def test_line_cuts_are_safe(text, pattern):
    split = regex.compile(PATTERNS[pattern]).findall
    lines = regex.findall(SEGMENT_PATTERNS[pattern], text)
    assert "".join(lines) == text
    assert [chunk for line in lines for chunk in split(line)] == split(text)
    assert make_split_long(PATTERNS[pattern])(text) == split(text)


@given(text=st.text(st.characters(max_codepoint=127), max_size=80), pattern=PATTERN_NAMES)
def test_ascii_twin_splits_like_the_published_pattern(text, pattern):
    expected = regex.findall(PATTERNS[pattern], text)
    assert re.findall(ASCII_PATTERNS[pattern], text, re.ASCII) == expected
    assert make_split(PATTERNS[pattern])(text) == expected


@given(text=any_text)
def test_line_cache_equals_chunk_path(text):
    tok = fresh()
    assert tok.encode_ordinary(text) == tok._encode_line(text)  # lines vs one split


def test_custom_pattern():
    tok = BPETokenizer.train("ab ab abc, abc", 260, pattern=r"\w+|\W")
    assert tok.pattern_name is None
    assert tok.decode(tok.encode("abc abc")) == "abc abc"
    with pytest.raises(ValueError, match="invalid split pattern"):
        BPETokenizer(pattern="(")


def test_cache_is_bounded_and_can_be_cleared():
    tok = fresh()
    tok._chunk_cache.max_size = tok._line_cache.max_size = 8
    text = " ".join(f"w{i}" for i in range(100)) + "\n" + "\n".join(f"l{i}" for i in range(50))
    assert tok.encode(text) == encode_reference(tok, text)
    assert len(tok._chunk_cache) <= 8 and len(tok._line_cache) <= 8
    tok.clear_cache()
    assert len(tok._chunk_cache) == 0 and len(tok._line_cache) == 0


def test_encode_batch_and_pickle():
    tok = trained()
    texts = ["hello world", "", "<|endoftext|>", "東京"]
    assert tok.encode_batch(texts, allowed_special="all") == [
        tok.encode(t, allowed_special="all") for t in texts]
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.merges == tok.merges and clone.special_tokens == tok.special_tokens
    assert clone.encode(training_text()) == tok.encode(training_text())


def test_inconsistent_tables_are_rejected():
    with pytest.raises(ValueError, match="uses id 300"):
        BPETokenizer({(1, 300): 256})
    with pytest.raises(ValueError, match="already exists"):
        BPETokenizer({(1, 2): 255})
    with pytest.raises(ValueError, match="must increase"):
        BPETokenizer({(1, 2): 257, (3, 4): 256})
    with pytest.raises(ValueError, match="already taken"):
        BPETokenizer({(1, 2): 256}, special_tokens={"<|x|>": 256})


@given(text=any_text)
def test_tiktoken_gives_the_same_ids(text):
    tiktoken = pytest.importorskip("tiktoken")
    tok = trained()
    enc = _tiktoken_encoding(tiktoken, tok)
    assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


@functools.cache
def _tiktoken_encoding(tiktoken, tok):
    ranks = {data: i for i, data in tok.vocab.items()}
    return tiktoken.Encoding("test", pat_str=tok.pattern, mergeable_ranks=ranks,
                             special_tokens=tok.special_tokens)


# --- the gpt4 pattern is today's cl100k pattern (issue 11, item 10) -----------------------------
def test_gpt4_pattern_keeps_trailing_whitespace_together():
    for split in (regex.compile(PATTERNS["gpt4"]).findall, make_split(PATTERNS["gpt4"])):
        assert split("hello\n  ") == ["hello", "\n  "]
        assert split("a\n  b\n\n") == ["a", "\n", " ", " b", "\n\n"]
        assert split("x = 1  \t") == ["x", " =", " ", "1", "  \t"]
    assert regex.findall(PATTERNS["gpt4-v1"], "hello\n  ") == ["hello", "\n", "  "]


@functools.cache
def _cl100k_pattern_from_tiktoken() -> str:
    """cl100k_base's pat_str, read from tiktoken's source (calling cl100k_base() would download
    its rank file)."""
    import ast

    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    with open(openai_public.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "cl100k_base":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Dict):
                    for key, value in zip(sub.keys, sub.values):
                        if isinstance(key, ast.Constant) and key.value == "pat_str":
                            return ast.literal_eval(value)
    pytest.fail("cl100k_base's pat_str not found in tiktoken's source")


def test_gpt4_pattern_is_tiktokens_cl100k_pattern():
    assert PATTERNS["gpt4"] == _cl100k_pattern_from_tiktoken()


@functools.cache
def _whitespace_tokenizer():
    """Merges "\\n ", "\\n  " and "  ": whitespace chunks then show how the text was split."""
    return BPETokenizer({(10, 32): 256, (256, 32): 257, (32, 32): 258}, "gpt4")


@given(text=st.lists(st.sampled_from(PIECES + ["line", " indented", "7"]), max_size=30)
       .map("".join))
def test_gpt4_ids_equal_tiktoken_with_the_cl100k_pattern(text):
    tiktoken = pytest.importorskip("tiktoken")
    tok = _whitespace_tokenizer()
    enc = _cl100k_encoding(tiktoken, tok)
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
    ids = tok.encode_ordinary("hello\n  ")
    assert ids == enc.encode_ordinary("hello\n  ") and ids[-1] == 257  # "\\n  " is one chunk


@functools.cache
def _cl100k_encoding(tiktoken, tok):
    ranks = {data: i for i, data in tok.vocab.items()}
    return tiktoken.Encoding("cl100k-pattern", pat_str=_cl100k_pattern_from_tiktoken(),
                             mergeable_ranks=ranks, special_tokens={})


def test_tokenizer_files_saved_with_the_older_gpt4_pattern_still_load(tmp_path):
    from tinyllm.tokenizer.patterns import GPT4_V1_SPLIT_PATTERN

    merges = trained().merges
    old = BPETokenizer(merges, GPT4_V1_SPLIT_PATTERN, {"<|endoftext|>": 256 + len(merges)})
    old.save(tmp_path / "t.json")
    text = (tmp_path / "t.json").read_text().replace('"gpt4-v1"', '"gpt4"')
    (tmp_path / "t.json").write_text(text)  # as the older tinyllm wrote it
    loaded = BPETokenizer.load(tmp_path / "t.json")
    assert loaded.pattern == GPT4_V1_SPLIT_PATTERN and loaded.pattern_name == "gpt4-v1"
    assert loaded.encode_ordinary("hello\n  ") == old.encode_ordinary("hello\n  ")
