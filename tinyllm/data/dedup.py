"""De-duplication: exact duplicates by hash, near duplicates by MinHash with LSH banding.

Web text repeats itself: the same article on two sites, the same licence at the bottom of a
thousand pages, a page and its printer-friendly copy. A model trained on repeats memorises them
and wastes compute, so we drop them, in two stages:

**Exact duplicates.** A 128-bit BLAKE2 hash of the (normalised) text; a document whose hash has
been seen before is dropped.

**Near duplicates.** Two documents are near duplicates when the Jaccard similarity of their
sets of word shingles (runs of `shingle_words` consecutive words) is at least `threshold`.
Comparing every pair is quadratic, so we use the classic pair of tricks:

- *MinHash*: apply `num_perm` random hash functions to every shingle and keep, for each, the
  minimum over the document. For one random hash function, the probability that two documents
  share the same minimum equals their Jaccard similarity, so the fraction of equal entries in
  two signatures estimates it.
- *LSH banding*: cut the signature into `bands` bands of `rows` values. Documents that agree on
  a whole band land in the same bucket and become candidates; a pair with similarity s becomes
  a candidate with probability ``1 - (1 - s**rows)**bands``, an S-curve that is steep around
  ``(1/bands)**(1/rows)``. We choose the bands so that this point lies just below `threshold`,
  then confirm each candidate by comparing whole signatures.

Everything per shingle is NumPy over a batch of documents at once (word hashing, shingle
hashing, the `num_perm` permutations and the per-document minimum); only the bucket look-ups,
one per band per document, are Python. Memory grows with the number of *kept* documents: a
signature (4 bytes x `num_perm`) plus one dictionary entry per band, about 2 KB per document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["MinHasher", "Deduplicator", "dedup", "lsh_params", "exact_key"]

def _mix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser: scrambles uint64 values so every output bit depends on every
    input bit (NumPy integer arithmetic wraps around modulo 2**64, which is what we want)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def exact_key(text: str) -> bytes:
    """The key used for exact de-duplication: a 16-byte BLAKE2b digest of the UTF-8 text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Choose (bands, rows) with ``bands * rows == num_perm`` for a similarity `threshold`.

    The S-curve of banding is steepest near ``(1/bands)**(1/rows)``. We take the largest
    `rows` whose steep point is still at or below `threshold`: a document at the threshold is
    then very likely a candidate (few misses), and the false candidates that a lower point
    lets in are removed by the exact signature comparison.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        if num_perm % rows == 0:
            bands = num_perm // rows
            if (1.0 / bands) ** (1.0 / rows) <= threshold:
                best = (bands, rows)
    return best


class MinHasher:
    """Computes MinHash signatures of documents, many documents per NumPy call.

    Words are maximal runs of ASCII letters, digits, underscores and non-ASCII bytes in the
    lower-cased UTF-8 text; a document with fewer than `shingle_words` words gets one shingle
    made of all its words, and a document without words gets the all-ones signature and
    `has_words` false.
    """

    def __init__(self, num_perm: int = 128, shingle_words: int = 5, seed: int = 0) -> None:
        if num_perm < 1 or shingle_words < 1:
            raise ValueError("num_perm and shingle_words must be positive")
        self.num_perm = num_perm
        self.shingle_words = shingle_words
        rng = np.random.default_rng(seed)
        # Simple tabulation hashing of words: one random 64-bit value per (position, byte).
        self._table = rng.integers(0, 2**64, size=(64, 256), dtype=np.uint64)
        # Odd multipliers combining the words of a shingle.
        self._combine = rng.integers(0, 2**63, size=shingle_words, dtype=np.uint64) * 2 + 1
        # The permutations x -> a*x + b (mod 2**32), a odd: each is a bijection of uint32.
        self._a = (rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) * 2 + 1)[:, None]
        self._b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32)[:, None]
        is_word = np.zeros(256, dtype=bool)
        for ch in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
            is_word[ch] = True
        is_word[0x80:] = True  # any byte of a multi-byte UTF-8 character
        self._is_word = is_word

    def word_hashes(self, data: np.ndarray, block: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
        """Hash every word of the byte array `data`; return (word start offsets, uint64 hashes).

        The hash of a word is the XOR over its bytes of ``table[position in word, byte]``
        (positions past 63 wrap around), computed for all words with one `reduceat`. The work
        needs about 25 bytes of temporary memory per input byte, so long inputs are done in
        blocks of `block` bytes, each cut just after a word ends.
        """
        all_starts, all_hashes = [], []
        lo = 0
        while lo < data.size:
            hi = min(lo + block, data.size)
            hi = self._next_break(data, hi)  # never cut a word in two
            starts, hashes = self._word_hashes_block(data[lo:hi])
            all_starts.append(starts + lo)
            all_hashes.append(hashes)
            lo = hi
        if not all_starts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        return np.concatenate(all_starts), np.concatenate(all_hashes)

    def _next_break(self, data: np.ndarray, i: int) -> int:
        """The index of the first non-word byte at or after `i` (or the end of `data`)."""
        window = 64
        while i < data.size:
            breaks = np.flatnonzero(~self._is_word[data[i : i + window]])
            if breaks.size:
                return i + int(breaks[0])
            i += window
            window *= 2
        return data.size

    def _word_hashes_block(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        is_word = self._is_word.take(data)
        starts = np.flatnonzero(is_word[1:] > is_word[:-1]) + 1  # a non-word byte, then a word
        if is_word.size and is_word[0]:
            starts = np.concatenate(([0], starts))
        if starts.size == 0:
            return starts, np.zeros(0, dtype=np.uint64)
        # Position of each byte inside its word: its index minus the index where the word
        # starts (a running maximum carries each start forward). Then one flat table look-up
        # per byte, at row `position`, column `byte`. int32 halves the memory traffic.
        start_of = np.zeros(data.size, dtype=np.int32)
        start_of[starts] = starts
        np.maximum.accumulate(start_of, out=start_of)
        index = np.arange(data.size, dtype=np.int32)
        index -= start_of
        index &= 63
        index <<= 8
        index |= data
        values = self._table.ravel().take(index)
        values[~is_word] = 0  # bytes between words contribute nothing to the XOR
        return starts, np.bitwise_xor.reduceat(values, starts)

    def signatures(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """MinHash signatures of `texts`: (uint32 array (len(texts), num_perm), has_words)."""
        n = len(texts)
        signatures = np.full((n, self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        if n == 0:
            return signatures, np.zeros(0, dtype=bool)
        # One byte array for the whole batch; the newline between documents is not a word
        # character, so no word spans two documents.
        encoded = [text.lower().encode("utf-8") for text in texts]
        doc_starts = np.cumsum([0] + [len(e) + 1 for e in encoded[:-1]])
        data = np.frombuffer(b"\n".join(encoded), dtype=np.uint8)
        word_starts, words = self.word_hashes(data)
        word_doc = np.searchsorted(doc_starts, word_starts, side="right") - 1
        has_words = np.bincount(word_doc, minlength=n) > 0
        shingles, shingle_doc = self._shingles(words, word_doc)
        self._min_over_documents(shingles, shingle_doc, signatures)
        return signatures, has_words

    def _shingles(self, words: np.ndarray, word_doc: np.ndarray):
        """Hash each run of `shingle_words` words of one document into one uint32."""
        k, count = self.shingle_words, words.size
        index = np.arange(count)
        combined = np.zeros(count, dtype=np.uint64)
        for j in range(k):
            other = np.minimum(index + j, count - 1)
            inside = (index + j < count) & (word_doc[other] == word_doc)  # same document
            combined += np.where(inside, words[other] * self._combine[j], np.uint64(0))
        # A shingle starts at word i if its last word is in the same document, or if i is the
        # first word of a document too short for even one full shingle.
        last = np.minimum(index + k - 1, count - 1)
        full = (index + k - 1 < count) & (word_doc[last] == word_doc)
        first = np.ones(count, dtype=bool)
        first[1:] = word_doc[1:] != word_doc[:-1]
        doc_words = np.bincount(word_doc)[word_doc]
        keep = full | (first & (doc_words < k))
        hashes = (_mix64(combined[keep]) >> np.uint64(32)).astype(np.uint32)
        return hashes, word_doc[keep]

    def _min_over_documents(self, shingles, shingle_doc, signatures, chunk: int = 4096) -> None:
        """signatures[d] = min over the shingles x of document d of (a*x + b) mod 2**32.

        The work is laid out as (num_perm, chunk) so that each document's shingles are a
        contiguous run along the last axis, where `reduceat` is fastest.
        """
        for lo in range(0, shingles.size, chunk):
            x = shingles[None, lo : lo + chunk]
            docs = shingle_doc[lo : lo + chunk]
            permuted = x * self._a  # (num_perm, chunk); uint32 arithmetic wraps around
            permuted += self._b
            # Shingles arrive grouped by document, so each document is one contiguous segment.
            seg_starts = np.flatnonzero(np.diff(docs, prepend=-1))
            mins = np.minimum.reduceat(permuted, seg_starts, axis=1).T
            seg_docs = docs[seg_starts]
            signatures[seg_docs] = np.minimum(signatures[seg_docs], mins)


class Deduplicator:
    """Streaming de-duplication: feed batches of documents, learn which ones to drop.

    Each kept document is remembered (its exact key always, its signature and band keys when
    near-duplicate detection is on), so later copies, in the same batch or any later one, are
    caught. Pass normalised text (see `tinyllm.data.clean.normalize`): the exact key is a hash
    of the text as given.

    >>> d = Deduplicator()
    >>> d.check_batch(["a b c d e f", "a b c d e f", "x y z"])
    [None, 'exact_duplicate', None]
    """

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle_words: int = 5,
        seed: int = 0,
        near: bool = True,
    ) -> None:
        self.threshold = threshold
        self.near = near
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self.hasher = MinHasher(num_perm, shingle_words, seed)
        self._exact: set[bytes] = set()
        self._buckets: dict[int, int] = {}  # band key -> index of a kept document
        self._kept = np.empty((64, num_perm), dtype=np.uint32)  # signatures of kept documents
        self._n_kept = 0
        rng = np.random.default_rng([seed, 1])
        # Random odd multipliers turning the `rows` values of one band into one 64-bit key;
        # different for every band, so equal values in different bands never collide.
        self._band_mix = rng.integers(0, 2**63, size=(self.bands, self.rows), dtype=np.uint64)
        self._band_mix = self._band_mix * np.uint64(2) + np.uint64(1)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """One uint64 bucket key per (document, band)."""
        n = signatures.shape[0]
        bands = signatures.reshape(n, self.bands, self.rows).astype(np.uint64)
        return _mix64((bands * self._band_mix).sum(axis=2, dtype=np.uint64))

    def check(self, text: str) -> str | None:
        """Check one document; see `check_batch`."""
        return self.check_batch([text])[0]

    def check_batch(self, texts: Sequence[str]) -> list[str | None]:
        """Return, for each text in order, "exact_duplicate", "near_duplicate" or None (keep).

        Kept documents are added to the index, so a document is compared with every kept
        document before it, including earlier ones in the same batch.
        """
        reasons: list[str | None] = []
        fresh = []  # positions of texts that are not exact duplicates
        for i, text in enumerate(texts):
            key = exact_key(text)
            if key in self._exact:
                reasons.append("exact_duplicate")
            else:
                self._exact.add(key)
                reasons.append(None)
                fresh.append(i)
        if not self.near or not fresh:
            return reasons
        signatures, has_words = self.hasher.signatures([texts[i] for i in fresh])
        keys = self.band_keys(signatures).tolist()
        for row, i in enumerate(fresh):
            if not has_words[row]:
                continue  # nothing to compare; only exact duplicates apply
            if self._is_near_duplicate(signatures[row], keys[row]):
                reasons[i] = "near_duplicate"
            else:
                self._add(signatures[row], keys[row])
        return reasons

    def _is_near_duplicate(self, signature: np.ndarray, keys: list[int]) -> bool:
        candidates = {self._buckets[k] for k in keys if k in self._buckets}
        if not candidates:
            return False
        similarity = (self._kept[sorted(candidates)] == signature).mean(axis=1)
        return bool(similarity.max() >= self.threshold)

    def _add(self, signature: np.ndarray, keys: list[int]) -> None:
        if self._n_kept == self._kept.shape[0]:  # grow by doubling, like a Python list
            grown = np.empty((2 * self._n_kept, self._kept.shape[1]), dtype=np.uint32)
            grown[: self._n_kept] = self._kept
            self._kept = grown
        self._kept[self._n_kept] = signature
        for key in keys:
            self._buckets.setdefault(key, self._n_kept)
        self._n_kept += 1


def dedup(
    docs: Iterable[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle_words: int = 5,
    seed: int = 0,
    near: bool = True,
    report=None,
    batch_size: int = 256,
) -> list[str]:
    """Return `docs` without exact and near duplicates (the first copy is kept, order kept).

    Each document is normalised before hashing, so copies that differ only in line endings,
    spacing or Unicode composition count as exact duplicates. `report`, a
    `tinyllm.data.clean.CleaningReport`, if given, records every document kept or dropped.
    """
    from tinyllm.data.clean import normalize

    deduplicator = Deduplicator(threshold, num_perm, shingle_words, seed, near)
    kept: list[str] = []
    batch: list[str] = []

    def flush() -> None:
        for text, reason in zip(batch, deduplicator.check_batch([normalize(t) for t in batch])):
            if reason is None:
                kept.append(text)
            if report is not None:
                report.keep(text) if reason is None else report.drop(text, reason)
        batch.clear()

    for doc in docs:
        batch.append(doc)
        if len(batch) >= batch_size:
            flush()
    flush()
    return kept
