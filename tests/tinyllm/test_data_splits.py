"""Train / val / test splits: the rule, small corpora cut into pieces, and a tokenizer that
never sees held-out text (issue 11, items 4, 5 and 14)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tinyllm.data.corpus import SplitPlan, cut_into_pieces, is_validation
from tinyllm.data.prepare import EOT, prepare
from tinyllm.data.prepared import load_prepared


def test_split_rule_spreads_val_and_test_evenly():
    plan = SplitPlan(100, 0.1, 0.1)
    held = {i: plan(i) for i in range(100) if plan(i) != "train"}
    assert [i for i, s in held.items() if s == "val"] == list(range(4, 100, 10))
    assert [i for i, s in held.items() if s == "test"] == list(range(9, 100, 10))
    assert plan.counts() == {"train": 80, "val": 10, "test": 10}


@given(st.integers(20, 400), st.floats(0.01, 0.4), st.floats(0.01, 0.4))
def test_split_rule_matches_fractions_and_streams(n, val, test):
    plan = SplitPlan(n, val, test)
    counts = plan.counts()
    assert counts["val"] >= 1 and counts["test"] >= 1
    # Without forcing, the fractions hold and the split of unit i does not depend on how many
    # units follow it.
    if not plan._forced:
        assert abs(counts["val"] + counts["test"] - n * (val + test)) <= 1.0 + 1e-6
        assert abs(counts["test"] - n * test) <= 2.0 + 1e-6
        longer = SplitPlan(n + 37, val, test)
        assert all(plan(i) == longer(i) for i in range(n))


def test_small_lists_get_each_split_asked_for():
    assert SplitPlan(1).counts() == {"train": 1, "val": 0, "test": 0}
    assert SplitPlan(2).counts() == {"train": 1, "val": 1, "test": 0}
    for n in range(3, 12):
        counts = SplitPlan(n).counts()
        assert counts["val"] >= 1 and counts["test"] >= 1 and counts["train"] >= 1
    assert SplitPlan(5, 0.1, 0.0).counts()["test"] == 0  # not asked for: none
    assert is_validation(9, 0.1)  # the two-way rule is unchanged


@given(st.text(st.sampled_from("ab \n"), max_size=400), st.integers(1, 60))
def test_pieces_join_back_and_cut_at_line_ends(text, max_chars):
    pieces = cut_into_pieces(text, max_chars)
    assert "".join(pieces) == text
    assert all(pieces)
    for piece in pieces[:-1]:
        assert piece.endswith("\n")
        # a piece is over the limit only when it is one long line
        assert len(piece) <= max_chars or "\n" not in piece[:-1]


def test_pieces_prefer_paragraph_breaks():
    text = "one two\nthree\n\nfour five six\nseven\n\neight"
    assert cut_into_pieces(text, 22) == ["one two\nthree\n\n", "four five six\nseven\n\n",
                                         "eight"]


def unique_word(i):
    return "".join(np.random.default_rng(1000 + i).choice(list("bcdfghjklmnpqrstvwxz"), 9))


def held_out_words_are_unknown_to_the_tokenizer(data, words_of):
    """Every word of held-out text is several tokens; every word of training text is one."""
    tok = data.tokenizer
    eot = tok.special_tokens[EOT]
    for split in ("train", "val", "test"):
        ids = getattr(data, split).tolist()
        text = tok.decode([eot if t == eot else t for t in ids]).replace(EOT, " ")
        words = words_of(text)
        assert words, split
        for word in words:
            n = len(tok.encode_ordinary(" " + word))
            assert (n == 1) if split == "train" else (n >= 3), (split, word, n)


def test_a_single_document_gets_val_and_test_and_they_never_train_the_tokenizer(tmp_path):
    paragraphs = [" ".join([unique_word(i)] * 20) for i in range(60)]
    text = "\n\n".join(paragraphs)
    (tmp_path / "book.txt").write_text(text)
    prepare([tmp_path / "book.txt"], tmp_path / "out", vocab_size=256 + 1 + 60 * 9,
            progress=False)  # fmt: skip
    data = load_prepared(tmp_path / "out")
    counts = data.meta["counts"]
    assert counts["val"]["docs"] >= 4 and counts["test"]["docs"] >= 4
    assert sum(c["bytes"] for c in counts.values()) == len(text.encode())
    assert data.meta["warnings"] and "pieces" in data.meta["warnings"][0]
    held_out_words_are_unknown_to_the_tokenizer(data, lambda t: set(t.split()))


def test_held_out_documents_never_train_the_tokenizer(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(30):
        (root / f"{i:02d}.txt").write_text(" ".join([unique_word(i)] * 20))
    prepare([root], tmp_path / "out", vocab_size=256 + 1 + 30 * 9, progress=False)
    data = load_prepared(tmp_path / "out")
    assert data.meta["counts"]["test"]["docs"] == 3 and data.meta["counts"]["val"]["docs"] == 3
    assert data.meta["units"]["piece_chars"] is None  # enough documents: split by document
    held_out_words_are_unknown_to_the_tokenizer(data, lambda t: set(t.split()))
