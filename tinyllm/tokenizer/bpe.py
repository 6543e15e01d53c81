"""`BPETokenizer`: byte-level BPE encoding and decoding, GPT-2 / GPT-4 style.

Encoding text takes three steps:

1. Special tokens (``"<|endoftext|>"``) are cut out first, if allowed; text that looks like a
   special token but is not allowed is an error unless asked to be read as ordinary text
   (the rules of `tiktoken`).
2. The split pattern cuts the ordinary text into chunks (words with their leading space,
   numbers, punctuation, whitespace).
3. Each chunk becomes its UTF-8 bytes, one token per byte, and the merges are applied: the
   adjacent pair with the earliest merge is replaced by its new token, again and again, until no
   adjacent pair has a merge.

Step 3 is the costly one, but text repeats: a chunk cache maps each chunk string to its ids, so
step 3 runs once per *distinct* chunk, and encoding is mostly the regex split plus dict lookups.
For the named patterns a second cache holds whole lines (cut where cutting provably changes no
chunk, see `patterns.SEGMENT_PATTERNS`), so text seen before skips even the split; and ASCII
lines are split by an equivalent pattern for the faster standard `re` module.

Ids: ``0..255`` are the single bytes in byte order for a trained tokenizer (a loaded GPT-2 or
tiktoken tokenizer keeps its own byte ids), merge ``k`` creates the next id, and the special
tokens come after the merges. ``vocab_size`` counts all of them: training with ``vocab_size=V``
and ``s`` special tokens makes ``V - 256 - s`` merges.
"""

from __future__ import annotations

from itertools import chain

from .patterns import (
    SEGMENT_PATTERNS,
    compile_pattern,
    make_split,
    resolve_pattern,
    special_token_pattern,
)
from .train import TrainResult, train_bpe

_NO_MERGE = 1 << 62  # the rank of a pair that has no merge: larger than every real id


class _Cache(dict):
    """A bounded dict that computes missing entries itself: text -> token ids.

    ``dict.__getitem__`` calls ``__missing__`` only on a miss, so a hit costs one C-level
    lookup; that is what lets ``map(cache.__getitem__, pieces)`` run at C speed. When full the
    cache is emptied (cheap, and a working set refills it at once); keys longer than
    ``max_key_len`` are computed but not kept, so one huge piece cannot hog memory. Full means
    ``max_size`` entries or ``max_chars`` characters of keys, whichever comes first: a corpus of
    long unique lines would otherwise fill the entry budget with hundreds of MB.
    """

    __slots__ = ("compute", "max_size", "max_key_len", "max_chars", "chars")

    def __init__(self, compute, max_size: int, max_key_len: int, max_chars: int = 1 << 23):
        super().__init__()
        self.compute = compute
        self.max_size = max_size
        self.max_key_len = max_key_len
        self.max_chars = max_chars
        self.chars = 0

    def __missing__(self, key: str) -> list[int]:
        ids = self.compute(key)
        if len(key) <= self.max_key_len:
            if len(self) >= self.max_size or self.chars >= self.max_chars:
                self.clear()
            self[key] = ids
            self.chars += len(key)
        return ids

    def clear(self) -> None:
        super().clear()
        self.chars = 0


class BPETokenizer:
    """A byte-level BPE tokenizer (see the module docstring for the rules).

    Build one with `BPETokenizer.train`, `BPETokenizer.load` (this project's JSON),
    `BPETokenizer.from_gpt2_files` or `BPETokenizer.from_tiktoken_file`, or directly from
    merges: ``BPETokenizer(merges, pattern="gpt4", special_tokens={"<|endoftext|>": 1000})``.

    Args:
        merges: ``{(id_a, id_b): new_id}`` in merge order; new ids must increase.
        pattern: ``"gpt2"``, ``"gpt4"`` or a custom split regex.
        special_tokens: ``{string: id}``; ids must not collide with other tokens.
        byte_ids: the token id of each byte value (default: byte ``b`` is id ``b``).
    """

    #: most entries kept in each encoding cache (chunks, lines)
    CACHE_SIZE = 1 << 17
    #: longest piece (in characters) that a cache keeps
    MAX_CACHED_LEN = 2000

    def __init__(self, merges=None, pattern: str = "gpt4", special_tokens=None, byte_ids=None):
        self.pattern_name, self.pattern = resolve_pattern(pattern)
        self._split = make_split(self.pattern)  # fast ASCII twin for gpt2/gpt4, see patterns.py
        self._byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        self._identity_bytes = self._byte_ids == list(range(256))
        self._merges = {(int(a), int(b)): int(z) for (a, b), z in (merges or {}).items()}
        self._special_tokens = {str(s): int(i) for s, i in (special_tokens or {}).items()}
        self._vocab = _build_vocab(self._byte_ids, self._merges, self._special_tokens)
        self._id_to_bytes = dict(self._vocab)  # vocab plus the special tokens' UTF-8
        for s, i in self._special_tokens.items():
            self._id_to_bytes[i] = s.encode("utf-8")
        self._vocab_size = max(self._id_to_bytes) + 1
        self._special_regex = {}  # frozenset of allowed specials -> compiled alternation
        # two caches: chunk -> ids (saves the merges), and line -> ids (saves the regex split
        # too; only for the named patterns, whose safe line cuts are known: see patterns.py)
        self._chunk_cache = _Cache(self._encode_chunk, self.CACHE_SIZE, self.MAX_CACHED_LEN)
        self._line_cache = _Cache(self._encode_line, self.CACHE_SIZE, self.MAX_CACHED_LEN)
        segment_pattern = SEGMENT_PATTERNS.get(self.pattern_name)
        self._lines = compile_pattern(segment_pattern).findall if segment_pattern else None
        self.train_result: TrainResult | None = None  # set by `train`

    # ----------------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------------
    @classmethod
    def train(cls, text_or_iterable, vocab_size: int, pattern: str = "gpt4", special_tokens=(),
              progress: bool = False) -> BPETokenizer:
        """Train on a string or an iterable of strings (documents; chunks never span two).

        Makes ``vocab_size - 256 - len(special_tokens)`` merges (fewer if the text runs out of
        pairs), then gives the special tokens the ids after the merges, in the order given.
        Special tokens in the text are cut out and take no part in the merges. The merges equal
        those of `tinyllm.tokenizer.train_reference`, ties included. The summary of the run
        (bytes per token, time) is kept in ``train_result``.
        """
        special_tokens = list(special_tokens)
        _check_special_names(special_tokens)
        result = train_bpe(text_or_iterable, vocab_size, pattern, special_tokens, progress)
        first_special = 256 + len(result.merges)
        specials = {s: first_special + i for i, s in enumerate(special_tokens)}
        tok = cls(result.merges, pattern, specials)
        tok.train_result = result
        return tok

    @classmethod
    def load(cls, path) -> BPETokenizer:
        """Load a tokenizer saved by `save` (JSON; the format is described in `io`)."""
        from .io import load_json

        return load_json(path, cls)

    @classmethod
    def from_gpt2_files(cls, vocab_path, merges_path, pattern: str = "gpt2") -> BPETokenizer:
        """Load GPT-2's published ``vocab.json`` + ``merges.txt`` (or any pair in that format)."""
        from .io import load_gpt2_files

        return load_gpt2_files(vocab_path, merges_path, pattern, cls)

    @classmethod
    def from_tiktoken_file(cls, path, pattern: str = "gpt4", special_tokens=None) -> BPETokenizer:
        """Load a tiktoken rank file (lines ``base64(token_bytes) rank``), e.g. cl100k_base."""
        from .io import load_tiktoken_file

        return load_tiktoken_file(path, pattern, special_tokens, cls)

    def save(self, path) -> None:
        """Save as versioned JSON (see `tinyllm.tokenizer.io`); `load` reads it back."""
        from .io import save_json

        save_json(self, path)

    def save_gpt2_files(self, vocab_path, merges_path) -> None:
        """Write GPT-2-style ``vocab.json`` + ``merges.txt`` (`from_gpt2_files` reads them)."""
        from .io import save_gpt2_files

        save_gpt2_files(self, vocab_path, merges_path)

    def save_tiktoken_file(self, path) -> None:
        """Write a tiktoken rank file (`from_tiktoken_file` reads it)."""
        from .io import save_tiktoken_file

        save_tiktoken_file(self, path)

    def save_hf(self, path) -> None:
        """Export a ``tokenizer.json`` that HF `tokenizers` reads (``Tokenizer.from_file``)."""
        from .io import save_hf_tokenizer_json

        save_hf_tokenizer_json(self, path)

    def __reduce__(self):  # pickle the definition, not the cache and compiled regexes
        return (_rebuild, (self._merges, self.pattern, self._special_tokens, self._byte_ids))

    # ----------------------------------------------------------------------------------------
    # the public tables
    # ----------------------------------------------------------------------------------------
    @property
    def merges(self) -> dict[tuple[int, int], int]:
        """``{(id_a, id_b): new_id}`` in merge order (a copy)."""
        return dict(self._merges)

    @property
    def vocab(self) -> dict[int, bytes]:
        """``{id: bytes}`` for the byte and merged tokens (a copy; special tokens excluded)."""
        return dict(self._vocab)

    @property
    def special_tokens(self) -> dict[str, int]:
        """``{string: id}`` (a copy)."""
        return dict(self._special_tokens)

    @property
    def byte_ids(self) -> list[int]:
        """The id of each single byte value (``list(range(256))`` for a trained tokenizer)."""
        return list(self._byte_ids)

    @property
    def vocab_size(self) -> int:
        """One more than the largest id: the size of a model's embedding table."""
        return self._vocab_size

    def __repr__(self) -> str:
        pattern = self.pattern_name or self.pattern
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, "
                f"pattern={pattern!r}, special_tokens={list(self._special_tokens)})")

    # ----------------------------------------------------------------------------------------
    # encoding
    # ----------------------------------------------------------------------------------------
    def _encode_chunk(self, chunk: str) -> list[int]:
        """Apply the merges to one chunk: always merge the adjacent pair with the lowest rank.

        ``ranks[i]`` holds the merge rank (here: the new id, since ids grow in merge order) of
        the pair ``(ids[i], ids[i+1])``. After a merge at ``i`` only the two pairs touching the
        new token change, so each step is one ``min`` and one ``index`` over a short list, both
        in C. Taking the leftmost lowest pair each time is the same as the textbook "merge
        every occurrence of the best pair, left to right": a merge never makes a pair whose
        rank is lower than the one just applied.
        """
        data = chunk.encode("utf-8")
        ids = list(data) if self._identity_bytes else [self._byte_ids[b] for b in data]
        if len(ids) < 2:
            return ids
        get = self._merges.get
        ranks = [get(pair, _NO_MERGE) for pair in zip(ids, ids[1:])]
        while ranks:
            new_id = min(ranks)
            if new_id == _NO_MERGE:
                break
            i = ranks.index(new_id)
            ids[i] = new_id
            del ids[i + 1]
            del ranks[i]
            if i > 0:
                ranks[i - 1] = get((ids[i - 1], new_id), _NO_MERGE)
            if i < len(ranks):
                ranks[i] = get((new_id, ids[i + 1]), _NO_MERGE)
        return ids

    def _encode_line(self, line: str) -> list[int]:
        """Encode a piece of text chunk by chunk: split, look each chunk up, concatenate."""
        return list(chain.from_iterable(map(self._chunk_cache.__getitem__, self._split(line))))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, reading special-token strings as ordinary text."""
        try:
            if self._lines is None:  # a custom pattern: chunk cache only
                return self._encode_line(text)
            # cut at safe line ends, look each line up (encoding it on a miss), concatenate:
            # on a hit the line costs one dict lookup, all in C
            lines = self._lines(text)
            return list(chain.from_iterable(map(self._line_cache.__getitem__, lines)))
        except UnicodeEncodeError:
            raise _surrogate_error(text) from None

    def encode(self, text: str, allowed_special="none_raise",
               disallowed_special="all") -> list[int]:
        """Encode text, with special tokens handled as `tiktoken` does.

        Args:
            allowed_special: special tokens to encode as such: ``"all"``, a set of strings,
                ``"none_raise"`` (none; the default) or ``"none"`` (none, and no error: every
                special-token string is read as ordinary text).
            disallowed_special: special tokens whose appearance in the text is an error:
                ``"all"`` (those not allowed; the default) or a set (``()`` reads them as
                ordinary text).
        """
        allowed, disallowed = self._special_sets(allowed_special, disallowed_special)
        for token in disallowed:
            if token in text:
                raise ValueError(
                    f"the text contains the special token {token!r} at index "
                    f"{text.index(token)}, which is not allowed here; pass "
                    f"allowed_special={{{token!r}}} (or 'all') to encode it as a special token, "
                    "or allowed_special='none' to encode it as ordinary text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        key = frozenset(allowed)
        pattern = self._special_regex.get(key)
        if pattern is None:
            pattern = self._special_regex[key] = special_token_pattern(allowed)
        ids: list[int] = []
        start = 0
        for match in pattern.finditer(text):
            ids += self.encode_ordinary(text[start:match.start()])
            ids.append(self._special_tokens[match.group()])
            start = match.end()
        ids += self.encode_ordinary(text[start:])
        return ids

    def encode_batch(self, texts, allowed_special="none_raise",
                     disallowed_special="all") -> list[list[int]]:
        """Encode each text of a list (one shared cache, so repeats across texts are cheap)."""
        return [self.encode(t, allowed_special, disallowed_special) for t in texts]

    def _special_sets(self, allowed_special, disallowed_special) -> tuple[set, set]:
        names = set(self._special_tokens)
        if allowed_special == "all":
            allowed = names
        elif allowed_special in ("none", "none_raise"):
            allowed = set()
        elif isinstance(allowed_special, str):
            raise ValueError(
                f"allowed_special must be 'all', 'none', 'none_raise' or a set of special "
                f"tokens, not the string {allowed_special!r} (wrap one token in a set)")
        else:
            allowed = set(allowed_special)
            unknown = allowed - names
            if unknown:
                raise ValueError(f"not special tokens of this tokenizer: {sorted(unknown)}")
        if allowed_special == "none":
            disallowed = set()
        elif disallowed_special == "all":
            disallowed = names - allowed
        elif isinstance(disallowed_special, str):
            raise ValueError("disallowed_special must be 'all' or a set of special tokens")
        else:
            disallowed = set(disallowed_special)
        return allowed, disallowed

    def clear_cache(self) -> None:
        """Forget the cached encodings (a fresh tokenizer starts with none)."""
        self._chunk_cache.clear()
        self._line_cache.clear()

    # ----------------------------------------------------------------------------------------
    # decoding
    # ----------------------------------------------------------------------------------------
    def decode_bytes(self, ids) -> bytes:
        """The bytes the ids stand for (special tokens as their UTF-8)."""
        try:
            return b"".join(map(self._id_to_bytes.__getitem__, ids))
        except KeyError as err:
            raise ValueError(
                f"unknown token id {err.args[0]!r}: ids of this tokenizer are the byte, merge "
                f"and special tokens below vocab_size={self.vocab_size}"
            ) from None

    def decode(self, ids, errors: str = "replace") -> str:
        """Decode ids to text. A token can end mid-character (ids cut anywhere, or ids a model
        made up), so invalid UTF-8 becomes U+FFFD by default; ``errors="strict"`` raises."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def token_to_bytes(self, token_id: int) -> bytes:
        """The bytes of one token."""
        return self.decode_bytes((token_id,))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _rebuild(merges, pattern, special_tokens, byte_ids) -> BPETokenizer:
    return BPETokenizer(merges, pattern, special_tokens, byte_ids)


def _check_special_names(names) -> None:
    for s in names:
        if not isinstance(s, str) or not s:
            raise ValueError(f"a special token must be a non-empty string, not {s!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"special tokens are repeated: {list(names)}")


# Limits on what a tokenizer's tables may build (cl100k_base's longest token has 128 bytes).
MAX_TOKEN_BYTES = 1 << 20
MAX_VOCAB_BYTES = 1 << 28


class TableError(ValueError):
    """Inconsistent tokenizer tables; ``merge_index`` says which merge, when one is at fault,
    so that the file loaders can name the line it came from."""

    def __init__(self, message: str, merge_index: int | None = None):
        super().__init__(message)
        self.merge_index = merge_index


def _build_vocab(byte_ids, merges, special_tokens) -> dict[int, bytes]:
    """Check the tables and build ``{id: bytes}``; errors say which entry is wrong."""
    if len(byte_ids) != 256 or len(set(byte_ids)) != 256 or min(byte_ids) < 0:
        raise TableError("byte_ids must give 256 distinct non-negative ids, one per byte value")
    vocab = {i: bytes([b]) for b, i in enumerate(byte_ids)}
    previous = -1
    total = 256
    for k, ((a, b), z) in enumerate(merges.items()):
        for part in (a, b):
            if part not in vocab:
                raise TableError(f"merge {k} ({a}, {b}) -> {z} uses id {part}, which no byte "
                                 "or earlier merge makes", k)
        if z in vocab:
            raise TableError(f"merge {k} ({a}, {b}) -> {z} makes id {z}, which already exists", k)
        if z <= previous:
            raise TableError(f"merge {k} ({a}, {b}) -> {z}: new ids must increase in merge "
                             f"order (the previous merge made {previous})", k)
        # A hostile table can double a token's length with each merge (60 lines, 2**60
        # bytes); real tokens are far shorter, so lengths are capped before building them.
        length = len(vocab[a]) + len(vocab[b])
        total += length
        if length > MAX_TOKEN_BYTES or total > MAX_VOCAB_BYTES:
            raise TableError(f"merge {k} ({a}, {b}) -> {z} makes a token of {length:,} bytes "
                             f"(tokens total {total:,}); over the limits of "
                             f"{MAX_TOKEN_BYTES:,} per token and {MAX_VOCAB_BYTES:,} in all", k)
        vocab[z] = vocab[a] + vocab[b]
        previous = z
    _check_special_names(list(special_tokens))
    taken = set(vocab)
    for s, i in special_tokens.items():
        if i < 0 or i in taken:
            raise TableError(f"special token {s!r} has id {i}, which is already taken")
        taken.add(i)
    return vocab


def _surrogate_error(text: str) -> ValueError:
    index = next((i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff"), -1)
    char = text[index] if index >= 0 else "?"
    return ValueError(
        f"text is not valid Unicode for UTF-8: lone surrogate {char!r} (U+{ord(char):04X}) at "
        f"index {index}; such text usually comes from decoding bytes with "
        "errors='surrogateescape' (decode with errors='replace' instead)"
    )
