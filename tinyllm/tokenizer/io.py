"""Tokenizer files: this project's JSON, GPT-2's pair of files, tiktoken ranks, HF export.

**tinyllm JSON, version 1** (`save_json`, `load_json`): UTF-8 JSON, one merge per line so that
files diff well and errors can name a line::

    {
      "format": "tinyllm-bpe",
      "version": 1,
      "pattern_name": "gpt4",            // "gpt2", "gpt4" or null for a custom pattern
      "pattern": "'(?i:[sdmt]|ll|...",   // the split regex itself, always written
      "vocab_size": 4096,                // one more than the largest id; checked on load
      "special_tokens": {"<|endoftext|>": 4095},
      "byte_ids": null,                  // null: byte b is id b; else the 256 ids in byte order
      "merges": [
        [32, 116, 256],                  // [id_a, id_b, new_id], in merge order
        ...
      ]
    }

A reader must refuse a ``version`` it does not know. Token bytes are not stored: they follow from
the bytes and the merges.

**GPT-2** (`load_gpt2_files`, `save_gpt2_files`): ``vocab.json`` maps token strings to ids and
``merges.txt`` lists one merge per line (``"Ġ t"``), in order, after an optional ``#version``
line. Bytes are written as printable characters by GPT-2's `bytes_to_unicode` table (a space is
``Ġ``). Entries of ``vocab.json`` that are neither a byte nor made by a merge are special tokens.

**tiktoken** (`load_tiktoken_file`, `save_tiktoken_file`): one line per token,
``base64(token bytes) rank``; the rank is the id. The merges are not stored, so they are
recovered: the merge that makes a token is the last step of BPE on its bytes with the tokens of
lower rank (the method of tiktoken's own educational code). The split pattern and the special
tokens are not in the file; pass them.

**HF tokenizers** (`save_hf_tokenizer_json`): a ``tokenizer.json`` for ``Tokenizer.from_file``:
a BPE model, the split pattern as a ``Split`` pre-tokenizer followed by ``ByteLevel`` (bytes as
GPT-2's printable characters), and the special tokens as added tokens.

Every reader reports a corrupt or inconsistent file with a `TokenizerFileError` that names the
file and, where one is to blame, the line.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat

from .bpe import TableError
from .patterns import GPT4_V1_SPLIT_PATTERN, PATTERNS

FORMAT_NAME = "tinyllm-bpe"
FORMAT_VERSION = 1
# Longest token accepted in a tiktoken rank file (cl100k_base's longest has 128 bytes).
MAX_RANK_TOKEN_BYTES = 1024


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read: names the file and, if known, the line."""

    def __init__(self, path, message: str, line: int | None = None):
        where = f"{os.fspath(path)}, line {line}" if line is not None else os.fspath(path)
        super().__init__(f"{where}: {message}")
        self.path = os.fspath(path)
        self.line = line


def _read_bytes(path) -> bytes:
    """The bytes of a regular file (symlinks followed); anything else is a TokenizerFileError.

    Checking the kind first matters: opening a FIFO would wait forever for a writer.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise TokenizerFileError(path, "not a regular file")
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise TokenizerFileError(path, f"cannot be read ({err.strerror or err})") from None


def _read_text(path) -> str:
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TokenizerFileError(path, f"not UTF-8 text ({err.reason} at byte {err.start})"
                                 ) from None
    # Read as open(..., newline=None) would: every line end becomes "\n".
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _parse_json(path, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise TokenizerFileError(path, f"invalid JSON: {err.msg} (column {err.colno})",
                                 err.lineno) from None
    except RecursionError:
        raise TokenizerFileError(path, "invalid JSON: nested too deeply") from None


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# --------------------------------------------------------------------------------------------
# tinyllm JSON
# --------------------------------------------------------------------------------------------
def save_json(tok, path) -> None:
    """Write ``tok`` in the tinyllm JSON format (see the module docstring)."""
    byte_ids = tok.byte_ids
    head = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "pattern_name": tok.pattern_name,
        "pattern": tok.pattern,
        "vocab_size": tok.vocab_size,
        "special_tokens": tok.special_tokens,
        "byte_ids": None if byte_ids == list(range(256)) else byte_ids,
    }
    lines = ["{"]
    lines += [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
    lines.append('  "merges": [')
    merges = [f"    [{a}, {b}, {z}]" for (a, b), z in tok.merges.items()]
    if merges:
        lines.append(",\n".join(merges))
    lines += ["  ]", "}", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def _merge_line(text: str, k: int) -> int | None:
    """The line of merge ``k`` in a file laid out by `save_json` (None if laid out otherwise)."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.strip().startswith('"merges"'):
            target = n + 1 + k
            if target < len(lines) and lines[target].strip().startswith("["):
                return target + 1  # 1-based
            return None
    return None


def load_json(path, cls):
    """Read a tokenizer written by `save_json`; ``cls`` is `BPETokenizer` (or a subclass)."""
    text = _read_text(path)
    data = _parse_json(path, text)
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise TokenizerFileError(path, f'not a tinyllm tokenizer file (no "format": '
                                 f'"{FORMAT_NAME}"); for GPT-2 or tiktoken files use '
                                 "BPETokenizer.from_gpt2_files / from_tiktoken_file")
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise TokenizerFileError(path, f"format version {version!r} is not supported (this "
                                 f"tinyllm reads version {FORMAT_VERSION})")
    for key in ("pattern", "special_tokens", "merges"):
        if key not in data:
            raise TokenizerFileError(path, f'missing key "{key}"')
    pattern, name = data["pattern"], data.get("pattern_name")
    if not isinstance(pattern, str):
        raise TokenizerFileError(path, '"pattern" must be a string')
    if name is not None and not isinstance(name, str):
        raise TokenizerFileError(path, '"pattern_name" must be a string or null')
    # Files saved before "gpt4" became the current cl100k pattern say "gpt4" with the older
    # pattern; they keep it (under the name "gpt4-v1") so they encode as they were trained.
    legacy = name == "gpt4" and pattern == GPT4_V1_SPLIT_PATTERN
    if name is not None and PATTERNS.get(name) != pattern and not legacy:
        raise TokenizerFileError(path, f'"pattern_name" {name!r} does not match "pattern"')
    specials = data["special_tokens"]
    if not isinstance(specials, dict) or not all(_is_int(i) for i in specials.values()):
        raise TokenizerFileError(path, '"special_tokens" must map strings to integer ids')
    byte_ids = data.get("byte_ids")
    if byte_ids is not None and not (isinstance(byte_ids, list) and len(byte_ids) == 256
                                     and all(_is_int(i) for i in byte_ids)):
        raise TokenizerFileError(path, '"byte_ids" must be null or a list of 256 integer ids')
    if not isinstance(data["merges"], list):
        raise TokenizerFileError(path, '"merges" must be a list')
    merges: dict[tuple[int, int], int] = {}
    for k, entry in enumerate(data["merges"]):
        if not (isinstance(entry, list) and len(entry) == 3 and all(map(_is_int, entry))):
            raise TokenizerFileError(path, f"merge {k} must be [id_a, id_b, new_id], got "
                                     f"{entry!r}", _merge_line(text, k))
        pair = (entry[0], entry[1])
        if pair in merges:
            raise TokenizerFileError(path, f"merge {k} repeats the pair {pair}",
                                     _merge_line(text, k))
        merges[pair] = entry[2]
    try:
        tok = cls(merges, pattern, specials, byte_ids)
    except TableError as err:
        line = None if err.merge_index is None else _merge_line(text, err.merge_index)
        raise TokenizerFileError(path, str(err), line) from None
    except ValueError as err:  # e.g. a custom pattern that does not compile
        raise TokenizerFileError(path, str(err)) from None
    expected = data.get("vocab_size")
    if expected is not None and expected != tok.vocab_size:
        raise TokenizerFileError(path, f'"vocab_size" is {expected!r} but the tables give '
                                 f"{tok.vocab_size}")
    return tok


# --------------------------------------------------------------------------------------------
# GPT-2: vocab.json + merges.txt
# --------------------------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from byte value to a printable character.

    Printable Latin-1 bytes stand for themselves; the other 68 (control characters, space, ...)
    are moved to the characters from U+0100 on, in byte order. So every byte sequence becomes a
    string without whitespace or control characters, which is what vocab.json and merges.txt
    store.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def _bytes_to_gpt2(data: bytes, table: dict[int, str]) -> str:
    return "".join(table[b] for b in data)


def load_gpt2_files(vocab_path, merges_path, pattern, cls):
    """Read GPT-2-style ``vocab.json`` + ``merges.txt`` (see the module docstring)."""
    vocab = _parse_json(vocab_path, _read_text(vocab_path))
    if not isinstance(vocab, dict):
        raise TokenizerFileError(vocab_path, "must be a JSON object {token: id}")
    seen: dict[int, str] = {}
    for token, i in vocab.items():
        if not _is_int(i) or i < 0:
            raise TokenizerFileError(vocab_path, f"token {token!r} has id {i!r}, not an "
                                     "integer >= 0")
        if i in seen:
            raise TokenizerFileError(vocab_path, f"tokens {seen[i]!r} and {token!r} share id {i}")
        seen[i] = token
    table = bytes_to_unicode()
    byte_ids = []
    for b in range(256):
        if table[b] not in vocab:
            raise TokenizerFileError(vocab_path, f"no token for byte 0x{b:02x} (written "
                                     f"{table[b]!r})")
        byte_ids.append(vocab[table[b]])

    merges: dict[tuple[int, int], int] = {}
    merge_lines: list[int] = []
    for n, line in enumerate(_read_text(merges_path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerFileError(merges_path, f"expected two tokens separated by one "
                                     f"space, got {line!r}", n)
        for part in parts:
            if part not in vocab:
                raise TokenizerFileError(merges_path, f"token {part!r} is not in {vocab_path}", n)
        merged = parts[0] + parts[1]
        if merged not in vocab:
            raise TokenizerFileError(merges_path, f"the merged token {merged!r} is not in "
                                     f"{vocab_path}", n)
        pair = (vocab[parts[0]], vocab[parts[1]])
        if pair in merges:
            raise TokenizerFileError(merges_path, f"the merge {line!r} is repeated", n)
        merges[pair] = vocab[merged]
        merge_lines.append(n)

    made = set(byte_ids) | set(merges.values())
    specials = {token: i for token, i in vocab.items() if i not in made}
    try:
        return cls(merges, pattern, specials, byte_ids)
    except TableError as err:
        if err.merge_index is None:
            raise TokenizerFileError(vocab_path, str(err)) from None
        raise TokenizerFileError(merges_path, str(err), merge_lines[err.merge_index]) from None
    except ValueError as err:  # e.g. an empty special token
        raise TokenizerFileError(vocab_path, str(err)) from None


def _gpt2_vocab(tok, file_name) -> tuple[dict[str, int], dict[int, str]]:
    """``tok``'s tokens as GPT-2 printable strings: ({text: id}, {id: text}). Two ids with the
    same bytes cannot both be written (the text is the key), which `file_name` is told."""
    table = bytes_to_unicode()
    vocab: dict[str, int] = {}
    for i, data in sorted(tok.vocab.items()):
        text = _bytes_to_gpt2(data, table)
        if text in vocab:
            raise ValueError(f"ids {vocab[text]} and {i} are the same bytes {data!r}; "
                             f"{file_name} cannot hold both")
        vocab[text] = i
    return vocab, {i: text for text, i in vocab.items()}


def save_gpt2_files(tok, vocab_path, merges_path) -> None:
    """Write ``tok`` as GPT-2-style ``vocab.json`` + ``merges.txt``."""
    vocab, id_to_text = _gpt2_vocab(tok, "vocab.json")
    for s, i in tok.special_tokens.items():
        vocab[s] = i
    with open(vocab_path, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(merges_path, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in tok.merges:
            f.write(f"{id_to_text[a]} {id_to_text[b]}\n")


# --------------------------------------------------------------------------------------------
# tiktoken rank files
# --------------------------------------------------------------------------------------------
def _bpe_bytes(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """BPE on ``token``'s bytes using only tokens of rank below ``max_rank`` (merge recovery)."""
    parts = [bytes([b]) for b in token]
    while True:
        best, best_rank = None, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best, best_rank = i, rank
        if best is None:
            return parts
        parts[best:best + 2] = [parts[best] + parts[best + 1]]


def merges_from_ranks(ranks: dict[bytes, int], path="<ranks>", lines=None):
    """Recover ``(byte_ids, merges)`` from tiktoken ranks ``{token_bytes: rank}``."""
    byte_ids = []
    for b in range(256):
        if bytes([b]) not in ranks:
            raise TokenizerFileError(path, f"no token for the single byte 0x{b:02x}")
        byte_ids.append(ranks[bytes([b])])
    merges: dict[tuple[int, int], int] = {}
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = _bpe_bytes(ranks, token, rank)
        if len(parts) != 2:
            line = lines.get(rank) if lines else None
            raise TokenizerFileError(path, f"token {token!r} (rank {rank}) is not the merge of "
                                     "two tokens of lower rank", line)
        merges[ranks[parts[0]], ranks[parts[1]]] = rank
    return byte_ids, merges


def load_tiktoken_file(path, pattern, special_tokens, cls):
    """Read a tiktoken rank file (see the module docstring)."""
    ranks: dict[bytes, int] = {}
    lines: dict[int, int] = {}  # rank -> line number, for error messages
    raw = _read_bytes(path)
    for n, line in enumerate(raw.split(b"\n"), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise TokenizerFileError(path, f"expected 'base64token rank', got {line[:60]!r}", n)
        try:
            token = base64.b64decode(fields[0], validate=True)
            rank = int(fields[1])
        except (binascii.Error, ValueError):
            raise TokenizerFileError(path, f"bad base64 token or rank in {line[:60]!r}",
                                     n) from None
        if not token or rank < 0:
            raise TokenizerFileError(path, "empty token or negative rank", n)
        if len(token) > MAX_RANK_TOKEN_BYTES:  # recovering its merge costs len**2
            raise TokenizerFileError(path, f"token of {len(token):,} bytes, longer than the "
                                     f"{MAX_RANK_TOKEN_BYTES:,} this reader accepts", n)
        if token in ranks:
            raise TokenizerFileError(path, f"token {token!r} repeated (first at line "
                                     f"{lines[ranks[token]]})", n)
        if rank in lines:
            raise TokenizerFileError(path, f"rank {rank} repeated (first at line "
                                     f"{lines[rank]})", n)
        ranks[token] = rank
        lines[rank] = n
    byte_ids, merges = merges_from_ranks(ranks, path, lines)
    try:
        return cls(merges, pattern, dict(special_tokens or {}), byte_ids)
    except TableError as err:
        raise TokenizerFileError(path, str(err)) from None


def save_tiktoken_file(tok, path) -> None:
    """Write ``tok``'s tokens as a tiktoken rank file (ids as ranks).

    Refuses a tokenizer that the file cannot express: two ids with the same bytes, or a merge
    that recovery from the ranks would not give back.
    """
    ranks: dict[bytes, int] = {}
    for i, data in sorted(tok.vocab.items()):
        if data in ranks:
            raise ValueError(f"ids {ranks[data]} and {i} are the same bytes {data!r}; "
                             "a rank file cannot hold both")
        ranks[data] = i
    if merges_from_ranks(ranks)[1] != tok.merges:
        raise ValueError("this tokenizer's merges cannot be recovered from its ranks, so a "
                         "tiktoken rank file would encode differently")
    with open(path, "w", encoding="ascii") as f:
        for data, i in ranks.items():
            f.write(f"{base64.b64encode(data).decode('ascii')} {i}\n")


# --------------------------------------------------------------------------------------------
# HF tokenizers export
# --------------------------------------------------------------------------------------------
def save_hf_tokenizer_json(tok, path) -> None:
    """Write a ``tokenizer.json`` that HF `tokenizers` reads with ``Tokenizer.from_file``.

    The split pattern must be one Oniguruma (HF's regex engine) accepts; both named ones are.
    """
    vocab, id_to_text = _gpt2_vocab(tok, "tokenizer.json")
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for s, i in sorted(tok.special_tokens.items(), key=lambda item: item[1])
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated",
                 "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{id_to_text[a]} {id_to_text[b]}" for a, b in tok.merges],
        },
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
