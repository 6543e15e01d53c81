"""The fast BPE trainer equals the plain reference algorithm, ties included."""

import inspect
import json.decoder
import pydoc_data.topics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyllm.tokenizer import BPETokenizer, train_bpe, train_reference
from tinyllm.tokenizer.train import count_chunks, merge_pair

PATTERNS = st.sampled_from(["gpt2", "gpt4"])

# Few distinct characters make many equal pair counts, so ties decide most merges; the
# fragments also cover contractions, digits, punctuation runs, \r\n and non-ASCII letters.
FRAGMENTS = ["a", "b", "ab", " ", "  ", "\n", "\r\n", "\t", "é", "'s", "'ll", "1", "234", ".",
             "!?", "ü", "世", "🎉", " a", "ba"]
small_texts = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


def real_text() -> str:
    """Real paragraphs: English prose, Python source, and lines that are not ASCII."""
    topics = pydoc_data.topics.topics
    prose = topics["for"][:2500] + topics["if"][:1500]
    code = inspect.getsource(json.decoder)[:3000]
    other = "naïve café déjà vu\n東京は日本の首都です。\n🎉🎉 emoji 👍🏽!\n"
    return prose + other + code + other


def assert_same_merges(text, vocab_size, pattern, special_tokens=()):
    expected = train_reference(text, vocab_size, pattern, special_tokens)
    got = train_bpe(text, vocab_size, pattern, special_tokens).merges
    assert list(got.items()) == list(expected.items())  # same merges in the same order


@given(text=small_texts, extra=st.integers(0, 40), pattern=PATTERNS)
def test_fast_trainer_equals_reference_on_small_texts(text, extra, pattern):
    assert_same_merges(text, 256 + extra, pattern)


@given(text=st.text(max_size=60), extra=st.integers(0, 30), pattern=PATTERNS)
def test_fast_trainer_equals_reference_on_any_text(text, extra, pattern):
    assert_same_merges(text, 256 + extra, pattern)


@given(docs=st.lists(small_texts, max_size=4), extra=st.integers(0, 30), pattern=PATTERNS)
def test_fast_trainer_equals_reference_on_documents(docs, extra, pattern):
    assert_same_merges(docs, 256 + extra, pattern)


@given(text=st.lists(st.sampled_from(FRAGMENTS + ["<|endoftext|>", "<|x|>"]), max_size=30)
       .map("".join), pattern=PATTERNS)
def test_fast_trainer_equals_reference_with_special_tokens(text, pattern):
    assert_same_merges(text, 256 + 20 + 2, pattern, special_tokens=["<|endoftext|>", "<|x|>"])


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_fast_trainer_equals_reference_on_real_paragraphs(pattern):
    assert_same_merges(real_text(), 256 + 150, pattern)


def test_ties_go_to_the_pair_that_occurs_first():
    # "cd" and "ab" occur twice each: "cd" comes first in the text, so it is merged first
    merges = train_bpe("cd ab cd ab", 257, pattern="gpt2").merges
    assert merges == {(ord("c"), ord("d")): 256}
    assert train_reference("cd ab cd ab", 257, pattern="gpt2") == merges


def test_first_appearance_moves_as_merges_happen():
    # After merging (a, a), the first occurrence of (a, b) in "aab ab" is in " ab" no more in
    # "aab" (whose a's are merged): the fast trainer must track that, like the reference.
    text = "aab ab ba ab aab xab xa"
    for vocab_size in range(256, 266):
        assert_same_merges(text, vocab_size, "gpt2")
        assert_same_merges(text, vocab_size, "gpt4")


def test_training_stops_when_no_pair_is_left():
    result = train_bpe("aaaa", 300, pattern="gpt4")
    assert list(result.merges.values()) == [256, 257]  # aa, then (aa)(aa)
    assert train_reference("aaaa", 300, pattern="gpt4") == result.merges
    assert train_bpe("", 300).merges == {}


def test_vocab_size_counts_bytes_merges_and_special_tokens():
    tok = BPETokenizer.train(real_text(), 300, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert len(tok.merges) == 300 - 256 - 2
    assert tok.special_tokens == {"<|endoftext|>": 298, "<|pad|>": 299}
    assert tok.vocab_size == 300
    assert sorted(tok.vocab) == list(range(298))
    with pytest.raises(ValueError, match="too small"):
        BPETokenizer.train("abc", 256, special_tokens=["<|endoftext|>"])
    with pytest.raises(ValueError, match="repeated"):
        BPETokenizer.train("abc", 300, special_tokens=["<|a|>", "<|a|>"])


def test_special_tokens_take_no_part_in_merges():
    with_special = train_bpe("<|endoftext|>" * 20 + "hello", 270,
                             special_tokens=["<|endoftext|>"]).merges
    assert with_special == train_bpe("hello", 270).merges


def test_train_result_summarizes_compression():
    text = real_text()
    tok = BPETokenizer.train(text, 400)
    r = tok.train_result
    assert r.n_bytes == len(text.encode("utf-8"))
    assert r.n_tokens == len(tok.encode(text))
    assert r.n_chunks == sum(count_chunks(text, "gpt4").values())
    assert r.bytes_per_token == pytest.approx(r.n_bytes / r.n_tokens)


def test_progress_bar_and_iterables(capsys):
    pytest.importorskip("tqdm")
    docs = (line for line in real_text().splitlines(keepends=True))
    merges = train_bpe(docs, 300, progress=True).merges
    assert merges == train_reference(real_text().splitlines(keepends=True), 300)
    assert "merges" in capsys.readouterr().err
    with pytest.raises(TypeError, match="iterable of str"):
        train_bpe([b"bytes"], 300)


def test_lone_surrogate_in_training_text_is_a_clear_error():
    with pytest.raises(ValueError, match="surrogate"):
        BPETokenizer.train("ok \ud800 no", 300)


def test_merge_pair():
    assert merge_pair([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]
