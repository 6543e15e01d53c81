"""Training byte-level BPE: the plain reference algorithm and the fast one that equals it.

Both trainers see the same thing: the text is cut into chunks by the split pattern (after the
special tokens are cut out, so they never take part in merges); each chunk starts as its UTF-8
bytes, ids 0..255; merge ``k`` replaces the most frequent adjacent pair by the new id
``256 + k``. Pairs never cross a chunk boundary.

**Ties.** Among pairs with the same count, the winner is the pair that occurs *first* in the
current token sequences, read chunk by chunk in text order. That is what the plain algorithm
(`train_reference`, the `minbpe` convention) does without saying so: it rebuilds a dict of
pair counts each round, inserting pairs in the order it meets them, and
``max(stats, key=stats.get)`` returns the first key with the largest count.

**The fast trainer** (`train_bpe`) produces the same merges without recounting:

1. Each distinct chunk is stored once, with its frequency. The distinct chunks are numbered in
   order of first appearance, so "the first occurrence of a pair in the text" is "its first
   occurrence in the lowest-numbered chunk that contains it".
2. ``counts[pair]`` is the weighted number of occurrences; ``where[pair]`` is a set of chunk
   numbers that contain the pair (a superset: entries go stale and are skipped when met).
3. A heap orders pairs by ``(-count, first)``, where ``first = chunk * stride + byte offset``
   of the pair's first occurrence. Byte offsets, unlike token indices, do not move when other
   tokens of the chunk merge, so a stored position stays comparable with fresh ones.
4. A merge of ``(a, b)`` into ``z`` only ever *removes* occurrences of pairs that do not
   contain ``z`` (``x a b y`` becomes ``x z y``: ``(x, a)`` and ``(b, y)`` lose one, ``(x, z)``
   and ``(z, y)`` are new). So an old pair's count can only fall and its first occurrence can
   only move later: its heap entry is never worse than the truth. That makes *lazy
   invalidation* exact: pop the top; if its count or position is out of date, push it back
   with the true values and look again; if it is up to date, no other pair can beat it.
5. Pairs containing ``z`` are new; they are pushed once, after the merge, with their final
   count and a lower bound of their position (the start of the first chunk that has them),
   which the check in 4 refines when they reach the top.

Each merge thus touches only the chunks that contain the merged pair.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .patterns import (
    compile_pattern,
    make_split_long,
    resolve_pattern,
    special_token_pattern,
    split_keeping_gaps,
)


# --------------------------------------------------------------------------------------------
# Progress and warnings
# --------------------------------------------------------------------------------------------
def progress_bar(total, desc: str, unit: str):
    """A tqdm bar on a terminal; plain periodic lines when stderr is a log file (no carriage
    returns), from `tinyllm.progress`."""
    if not sys.stderr.isatty():
        from tinyllm.progress import progress_bar as lines

        return lines(total=total, desc=desc, unit=unit)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, mininterval=0.5)


#: Below this many bytes of training text per merge asked for, `size_warning` warns.
MIN_BYTES_PER_MERGE = 50


def size_warning(n_texts: int, n_bytes: int, vocab_size: int, n_special: int = 1) -> str | None:
    """A warning, to print before training, when the text is small for the vocabulary.

    Late merges of a vocabulary trained on too little text are fitted to a handful of words,
    and training stops early when no pair is left; both waste embedding rows.
    """
    merges = max(0, vocab_size - 256 - n_special)
    if n_bytes >= MIN_BYTES_PER_MERGE * merges:
        return None
    return (f"the tokenizer's training text ({n_texts:,} texts, {n_bytes:,} bytes) is small for "
            f"a {vocab_size:,}-token vocabulary: {merges:,} merges want about "
            f"{MIN_BYTES_PER_MERGE * merges:,} bytes, so training may stop early and late merges "
            "fit a handful of words; consider a smaller vocabulary")


def shortfall_warning(n_merges: int, vocab_size: int, n_special: int = 1) -> str | None:
    """A warning, after training, when fewer merges were made than the vocabulary asked for."""
    wanted = vocab_size - 256 - n_special
    if n_merges >= wanted:
        return None
    return (f"tokenizer training stopped after {n_merges:,} of {wanted:,} merges (no pair of "
            f"tokens left to merge): the vocabulary has {256 + n_merges + n_special:,} tokens, "
            f"not {vocab_size:,}")


# --------------------------------------------------------------------------------------------
# Shared: from text to chunks
# --------------------------------------------------------------------------------------------
def iter_texts(text_or_iterable) -> Iterable[str]:
    """Yield the documents: a single string, or each string of an iterable of strings."""
    if isinstance(text_or_iterable, str):
        yield text_or_iterable
        return
    for text in text_or_iterable:
        if not isinstance(text, str):
            raise TypeError(f"training data must be str or an iterable of str, got {type(text)}")
        yield text


def iter_pieces(texts: Iterable[str], special_tokens=()) -> Iterable[str]:
    """Yield the ordinary text between special tokens (which never take part in merges)."""
    special = special_token_pattern(special_tokens)
    for text in texts:
        if special is None:
            yield text
        else:
            yield from special.split(text)


def count_chunks(text_or_iterable, pattern: str, special_tokens=(),
                 progress: bool = False) -> Counter:
    """Count the distinct chunks of the text; the Counter's order is that of first appearance.

    This and the merges are the two costs of training; the split is a regex over every
    character, so it uses the fast ASCII twin of the pattern where it can (see patterns.py).
    """
    split = make_split_long(resolve_pattern(pattern)[1])
    counts: Counter = Counter()
    texts = iter_texts(text_or_iterable)
    bar = None
    if progress:
        total = 1 if isinstance(text_or_iterable, str) else getattr(text_or_iterable, "__len__",
                                                                     lambda: None)()
        bar = progress_bar(total, "splitting", "text")
    special = special_token_pattern(special_tokens)
    for text in texts:
        for piece in [text] if special is None else special.split(text):
            counts.update(split(piece))  # Counter.update of a list counts in C
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return counts


def utf8(chunk: str) -> bytes:
    """UTF-8 bytes of a chunk, with a clear error for text that UTF-8 cannot encode."""
    try:
        return chunk.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = err.object[err.start]
        raise ValueError(
            f"text contains {bad!r} (U+{ord(bad):04X}), a lone surrogate that UTF-8 cannot "
            "encode; fix the text (e.g. decode its bytes with errors='replace')"
        ) from None


def number_of_merges(vocab_size: int, special_tokens) -> int:
    """Merges to make: the vocabulary holds 256 bytes, the merges, then the special tokens."""
    n = vocab_size - 256 - len(special_tokens)
    if n < 0:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: 256 byte tokens and "
            f"{len(special_tokens)} special tokens need at least {256 + len(special_tokens)}"
        )
    return n


# --------------------------------------------------------------------------------------------
# The specification: the plain algorithm
# --------------------------------------------------------------------------------------------
def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id``."""
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_reference(text_or_iterable, vocab_size: int, pattern: str = "gpt4",
                    special_tokens=()) -> dict[tuple[int, int], int]:
    """The plain BPE training algorithm: the specification and the test oracle.

    Every round recounts all pairs over the whole text, chunk by chunk in text order, and merges
    the most frequent; ``max`` returns the first pair inserted among equal counts, i.e. the one
    that occurs first. Training stops early when no chunk has two tokens left. Very slow on
    large texts (every round reads everything); use `train_bpe` for real work.
    Returns the merges ``{(id_a, id_b): new_id}`` in merge order.
    """
    split = split_keeping_gaps(compile_pattern(resolve_pattern(pattern)[1]))
    ids = [
        list(utf8(chunk))
        for piece in iter_pieces(iter_texts(text_or_iterable), special_tokens)
        for chunk in split(piece)
    ]
    merges: dict[tuple[int, int], int] = {}
    for k in range(number_of_merges(vocab_size, special_tokens)):
        stats: dict[tuple[int, int], int] = {}
        for chunk_ids in ids:
            for pair in zip(chunk_ids, chunk_ids[1:]):
                stats[pair] = stats.get(pair, 0) + 1
        if not stats:
            break
        pair = max(stats, key=stats.get)
        ids = [merge_pair(chunk_ids, pair, 256 + k) for chunk_ids in ids]
        merges[pair] = 256 + k
    return merges


# --------------------------------------------------------------------------------------------
# The fast trainer
# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What training produced, and a summary of it."""

    merges: dict[tuple[int, int], int]
    n_bytes: int  # UTF-8 bytes of ordinary text seen
    n_tokens: int  # tokens that text becomes with the merges (special tokens not counted)
    n_chunks: int  # chunks made by the split pattern
    n_distinct_chunks: int
    seconds: float

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / self.n_tokens if self.n_tokens else 0.0


class _PairIndex:
    """Pair counts, pair -> chunks index and the lazily invalidated heap of the fast trainer."""

    def __init__(self, words: list[list[int]], freqs: list[int]):
        self.words = words
        self.freqs = freqs
        self.token_len = [1] * 256  # bytes per token id, to compute byte offsets
        # a position is chunk * stride + byte offset; stride exceeds every chunk's length
        self.stride = max((len(w) for w in words), default=0) + 1
        counts: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], set[int]] = {}
        first: dict[tuple[int, int], int] = {}
        for c, (w, f) in enumerate(zip(words, freqs)):
            base = c * self.stride
            for offset, pair in enumerate(zip(w, w[1:])):  # all tokens are 1 byte long yet
                if pair in counts:
                    counts[pair] += f
                    where[pair].add(c)
                else:
                    counts[pair] = f
                    where[pair] = {c}
                    first[pair] = base + offset
        self.counts = counts
        self.where = where
        self.heap = [(-n, first[pair], pair) for pair, n in counts.items()]
        heapq.heapify(self.heap)

    def find(self, c: int, pair: tuple[int, int]) -> int | None:
        """Byte offset of the first occurrence of ``pair`` in chunk ``c``, or None."""
        a, b = pair
        w = self.words[c]
        token_len = self.token_len
        offset = 0
        for i in range(len(w) - 1):
            if w[i] == a and w[i + 1] == b:
                return offset
            offset += token_len[w[i]]
        return None

    def first_position(self, pair: tuple[int, int], lower_bound: int) -> int | None:
        """The true position of the first occurrence of ``pair``, at or after ``lower_bound``."""
        start = lower_bound // self.stride
        chunks = self.where[pair]
        for c in sorted(c for c in chunks if c >= start):
            offset = self.find(c, pair)
            if offset is not None:
                return c * self.stride + offset
            chunks.discard(c)  # a stale entry: the pair left this chunk
        return None

    def pop_best(self) -> tuple[int, int] | None:
        """Remove and return the most frequent pair (first occurrence breaks ties), or None."""
        heap, counts = self.heap, self.counts
        while heap:
            neg_count, position, pair = heap[0]
            count = counts.get(pair, 0)
            if count <= 0:  # the pair is gone
                heapq.heappop(heap)
                continue
            if count != -neg_count:  # stale count: the true entry ranks lower, re-file it
                heapq.heapreplace(heap, (-count, position, pair))
                continue
            true_position = self.first_position(pair, position)
            if true_position != position:  # stale position (later than stored), re-file
                heapq.heapreplace(heap, (-count, true_position, pair))
                continue
            heapq.heappop(heap)
            return pair
        return None

    def merge(self, pair: tuple[int, int], z: int) -> None:
        """Replace ``pair`` by the new token ``z`` in every chunk that has it, updating counts.

        Each occurrence turns ``... l a b r ...`` into ``... l z r ...`` in place, left to
        right, and its effect on the counts is applied at once: ``(l, a)`` and ``(b, r)`` lose
        the chunk's frequency, ``(l, z)`` and ``(z, r)`` gain it. Because each step is applied to
        the sequence as the previous step left it, overlapping cases come out right by
        themselves (in ``a b a b``, the second step sees ``z a b`` and turns ``(z, a)`` into
        ``(z, z)``).
        """
        a, b = pair
        counts, where, words, freqs = self.counts, self.where, self.words, self.freqs
        stride = self.stride
        new_pairs: dict[tuple[int, int], int] = {}  # new pair -> lower bound of its position
        self.token_len.append(self.token_len[a] + self.token_len[b])
        for c in sorted(where.pop(pair)):  # chunk order, so the first chunk seen is the lowest
            w = words[c]
            f = freqs[c]
            i = 0
            last = len(w) - 1  # index of the last token
            while i < last:
                if w[i] != a or w[i + 1] != b:
                    i += 1
                    continue
                w[i] = z
                del w[i + 1]
                last -= 1
                if i > 0:
                    left = w[i - 1]
                    counts[left, a] -= f
                    p = (left, z)
                    if p in new_pairs:
                        counts[p] += f
                        where[p].add(c)
                    else:
                        counts[p] = f
                        where[p] = {c}
                        new_pairs[p] = c * stride
                if i < last:
                    right = w[i + 1]
                    counts[b, right] -= f
                    p = (z, right)
                    if p in new_pairs:
                        counts[p] += f
                        where[p].add(c)
                    else:
                        counts[p] = f
                        where[p] = {c}
                        new_pairs[p] = c * stride
                i += 1
        del counts[pair]
        for p, position in new_pairs.items():
            n = counts[p]
            if n > 0:  # (z, a) can appear and vanish within one chunk (see the docstring)
                heapq.heappush(self.heap, (-n, position, p))
            else:
                del counts[p]
                del where[p]


def train_bpe(text_or_iterable, vocab_size: int, pattern: str = "gpt4", special_tokens=(),
              progress: bool = False) -> TrainResult:
    """Train byte-level BPE fast; the merges equal `train_reference`'s exactly.

    ``progress=True`` shows a tqdm bar over the merges (tqdm is imported only then).
    """
    started = time.perf_counter()
    special_tokens = list(special_tokens)
    n_merges = number_of_merges(vocab_size, special_tokens)
    chunk_counts = count_chunks(text_or_iterable, pattern, special_tokens, progress)
    words = [list(utf8(chunk)) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    index = _PairIndex(words, freqs)

    bar = progress_bar(n_merges, "merges", "merge") if progress else None
    merges: dict[tuple[int, int], int] = {}
    for k in range(n_merges):
        pair = index.pop_best()
        if pair is None:  # every chunk is a single token: nothing left to merge
            break
        index.merge(pair, 256 + k)
        merges[pair] = 256 + k
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()

    n_bytes = sum(len(chunk.encode("utf-8")) * f for chunk, f in chunk_counts.items())
    n_tokens = sum(len(w) * f for w, f in zip(words, freqs))
    return TrainResult(
        merges=merges,
        n_bytes=n_bytes,
        n_tokens=n_tokens,
        n_chunks=sum(freqs),
        n_distinct_chunks=len(words),
        seconds=time.perf_counter() - started,
    )
