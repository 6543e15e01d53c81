"""De-duplication: exact copies, near copies (MinHash + LSH), and the MinHash estimate."""

import numpy as np
import pytest

from tinyllm.data.clean import CleaningReport
from tinyllm.data.dedup import Deduplicator, MinHasher, dedup, lsh_params


def make_doc(rng, n_words=300, vocab_size=3000):
    return " ".join(f"word{int(i)}" for i in rng.integers(0, vocab_size, n_words))


def change_words(doc, rng, n):
    words = doc.split()
    for i in rng.choice(len(words), n, replace=False):
        words[i] = "changed"
    return " ".join(words)


def shingle_jaccard(a, b, k=5):
    def shingles(text):
        w = text.lower().split()
        return {tuple(w[i : i + k]) for i in range(len(w) - k + 1)}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def test_exact_duplicates_removed_after_normalisation():
    a = "First document, with enough words to hash.\nSecond line."
    docs = [a, a.replace("\n", "\r\n"), "Something else entirely, unrelated.", a]
    report = CleaningReport()
    assert dedup(docs, report=report) == [docs[0], docs[2]]
    assert report.dropped_docs == {"exact_duplicate": 2}
    assert report.docs_kept == 2


def test_near_duplicate_with_a_few_words_changed_is_caught():
    rng = np.random.default_rng(0)
    original = make_doc(rng)
    near = change_words(original, rng, 3)  # 3 of 300 words changed
    different = make_doc(rng)  # same vocabulary, different text
    assert shingle_jaccard(original, near) > 0.9
    report = CleaningReport()
    kept = dedup([original, different, near], report=report)
    assert kept == [original, different]
    assert report.dropped_docs == {"near_duplicate": 1}


def test_near_duplicate_detection_can_be_switched_off_and_threshold_matters():
    rng = np.random.default_rng(1)
    original = make_doc(rng)
    near = change_words(original, rng, 3)
    assert dedup([original, near], near=False) == [original, near]
    far = change_words(original, rng, 40)  # Jaccard around 0.3
    assert shingle_jaccard(original, far) < 0.5
    assert dedup([original, far], threshold=0.8) == [original, far]
    assert dedup([original, far], threshold=0.2) == [original]


def test_duplicates_found_across_batches_and_within_a_batch():
    rng = np.random.default_rng(2)
    docs = [make_doc(rng) for _ in range(20)]
    stream = docs + [change_words(docs[3], rng, 2), change_words(docs[17], rng, 2)]
    kept = dedup(stream, batch_size=7)
    assert kept == docs


def test_minhash_estimates_jaccard():
    rng = np.random.default_rng(3)
    hasher = MinHasher(num_perm=256, seed=5)
    errors = []
    for n_changed in (0, 10, 30, 60):
        a = make_doc(rng, 400)
        b = change_words(a, rng, n_changed) if n_changed else a
        signatures, has_words = hasher.signatures([a, b])
        assert has_words.all()
        errors.append((signatures[0] == signatures[1]).mean() - shingle_jaccard(a, b))
    assert errors[0] == 0
    assert max(abs(e) for e in errors) < 0.1  # standard error is about 0.03


def test_minhash_is_deterministic_and_batch_independent():
    rng = np.random.default_rng(4)
    docs = [make_doc(rng, n) for n in (1, 3, 50, 200)] + ["", "!!! ???"]
    hasher = MinHasher(seed=7)
    together, has_words = hasher.signatures(docs)
    alone = np.vstack([MinHasher(seed=7).signatures([d])[0] for d in docs])
    np.testing.assert_array_equal(together, alone)
    assert has_words.tolist() == [True, True, True, True, False, False]


def test_documents_without_words_are_only_exact_deduplicated():
    d = Deduplicator()
    assert d.check_batch(["...", "!!!", "..."]) == [None, None, "exact_duplicate"]


def test_lsh_params():
    assert lsh_params(0.8, 128) == (16, 8)
    for threshold in (0.3, 0.5, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows == 128
        assert (1 / bands) ** (1 / rows) <= threshold
    with pytest.raises(ValueError):
        lsh_params(0.0, 128)


def test_word_hashing_in_blocks_matches_one_pass():
    rng = np.random.default_rng(5)
    text = make_doc(rng, 500) + " caf\u00e9 na\u00efve " + make_doc(rng, 100)
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    hasher = MinHasher()
    starts, hashes = hasher.word_hashes(data)
    assert len(starts) == len(text.split())
    for block in (7, 64, 1000):
        s, h = hasher.word_hashes(data, block=block)
        np.testing.assert_array_equal(s, starts)
        np.testing.assert_array_equal(h, hashes)
