"""A prepared data folder: what it holds, how to read it, and whether it is still up to date.

`tinyllm prepare` (see `tinyllm.data.prepare`) writes a folder::

    train.bin  val.bin  test.bin   token files (`tinyllm.data.dataset`)
    tokenizer.json                 the tokenizer that made them
    meta.json                      counts, cleaning report, provenance; "complete": true

The whole folder is built under a hidden temporary name and renamed into place at the end, and
``meta.json`` is its last file, with ``"complete": true``. So a folder under its final name
is either whole or refused: every reader here checks the marker first.

**Provenance.** ``meta.json["provenance"]`` records what the folder was made from, as built by
`provenance`. A caller that is about to reuse a folder (``tinyllm train`` reusing
``RUN/data``) builds the provenance of what it is asked for and calls `check_prepared`::

    expected = provenance(["my_texts/"], vocab_size=2048)          # or tokenizer="tok.json"
    differences = check_prepared("runs/x/data", expected)
    if differences:          # e.g. ["sources: prepared from builtin:pydoc, now /home/me/my_texts"]
        ...                  # prepare again, or refuse naming the differences
    data = load_prepared("runs/x/data")   # .tokenizer, .train, .val, .test, .meta

Sources are fingerprinted cheaply and conservatively: a built-in corpus by its name and the
Python version it comes from; a path by its absolute form and, for the files under it, their
count, total size and a SHA-256 of their (relative path, size, modification time) list. Any
edit, added or removed file, or ``touch`` counts as a change; reading the contents is never
needed. A given tokenizer is identified by the SHA-256 of its canonical JSON (`tokenizer_sha256`),
so two copies of one tokenizer agree and any changed merge does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyllm.data.dataset import DataFileError, read_header, read_tokens

__all__ = [
    "META_FORMAT",
    "META_VERSION",
    "SPLITS",
    "PreparedFolderError",
    "Prepared",
    "read_meta",
    "load_prepared",
    "provenance",
    "check_prepared",
    "tokenizer_sha256",
    "source_fingerprint",
]

META_FORMAT = "tinyllm-tokens"
META_VERSION = 2  # 2: test split, provenance, completion marker
SPLITS = ("train", "val", "test")
BUILTIN_PREFIX = "builtin:"
# Bumped whenever `normalize`, the filters or the split rule change what a corpus becomes, so
# that folders made by older code are prepared again.
CLEANING_VERSION = 2
SPLIT_RULE_VERSION = 2


class PreparedFolderError(DataFileError):
    """A prepared folder that is incomplete, corrupt or of another version (names the file)."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _read_json_file(path: Path, error=PreparedFolderError):
    try:
        info = os.stat(path)
    except OSError as err:
        raise error(path, f"cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(path, "is not a regular file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        return json.loads(raw.decode("utf-8"))
    except OSError as err:
        raise error(path, f"cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise error(path, f"is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise error(path, f"is not valid JSON ({err})") from None


def _expect(path, condition: bool, message: str) -> None:
    if not condition:
        raise PreparedFolderError(path, message)


def read_meta(folder: str | os.PathLike) -> dict:
    """Read and check ``folder/meta.json``; refuse an incomplete or foreign folder.

    Raises `PreparedFolderError` (a ValueError) naming the file and the problem.
    """
    folder = Path(folder)
    path = folder / "meta.json"
    if not os.path.lexists(path):
        raise PreparedFolderError(
            folder, "not a complete prepared data folder (no meta.json: run `tinyllm prepare` "
            "again; an interrupted prepare leaves nothing under the final name)"
        )
    meta = _read_json_file(path)
    _expect(path, isinstance(meta, dict) and meta.get("format") == META_FORMAT,
            f'not a tinyllm data description (no "format": "{META_FORMAT}")')
    version = meta.get("version")
    _expect(path, version == META_VERSION,
            f"written by another tinyllm (version {version!r}, this one reads {META_VERSION}); "
            "run `tinyllm prepare` again")
    _expect(path, meta.get("complete") is True,
            'incomplete: no "complete": true marker (prepare was interrupted); run it again')
    files = meta.get("files")
    _expect(path, isinstance(files, dict) and all(
        isinstance(files.get(s), str) and files[s] == f"{s}.bin" for s in SPLITS),
        f'"files" must name {", ".join(s + ".bin" for s in SPLITS)}')
    tok = meta.get("tokenizer")
    _expect(path, isinstance(tok, dict) and tok.get("file") == "tokenizer.json"
            and _is_int(tok.get("vocab_size")) and tok["vocab_size"] > 0
            and _is_int(tok.get("eot_id")) and 0 <= tok["eot_id"] < tok["vocab_size"]
            and isinstance(tok.get("eot_token"), str),
            '"tokenizer" must give file "tokenizer.json", a positive vocab_size, an eot_id and '
            "an eot_token")
    _expect(path, isinstance(meta.get("provenance"), dict), 'missing "provenance"')
    counts = meta.get("counts")
    _expect(path, isinstance(counts, dict) and all(
        isinstance(counts.get(s), dict) and all(_is_int(counts[s].get(k)) and counts[s][k] >= 0
                                                for k in ("docs", "tokens", "bytes"))
        for s in SPLITS), '"counts" must give docs, tokens and bytes (integers) for each split')
    return meta


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class Prepared:
    """A loaded prepared folder: its description, tokenizer and memory-mapped token arrays."""

    folder: Path
    meta: dict
    tokenizer: object
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def load_prepared(folder: str | os.PathLike) -> Prepared:
    """Load a folder written by `tinyllm.data.prepare.prepare`, checking everything it holds.

    The marker, the tokenizer (vocabulary size, end-of-text id) and each token file (header,
    token count, every id inside the vocabulary) are checked against ``meta.json``; any
    disagreement raises `PreparedFolderError` naming the file.
    """
    from tinyllm.tokenizer import BPETokenizer

    folder = Path(folder)
    meta = read_meta(folder)
    tokenizer = BPETokenizer.load(folder / "tokenizer.json")
    vocab_size = meta["tokenizer"]["vocab_size"]
    if tokenizer.vocab_size != vocab_size:
        raise PreparedFolderError(folder / "tokenizer.json", f"vocabulary {tokenizer.vocab_size}"
                                  f" but meta.json says {vocab_size}")
    eot_id = meta["tokenizer"]["eot_id"]
    if tokenizer.special_tokens.get(meta["tokenizer"]["eot_token"]) != eot_id:
        raise PreparedFolderError(folder / "tokenizer.json", f"its end-of-text id is not "
                                  f"{eot_id}, as meta.json says")
    arrays = {}
    for split in SPLITS:
        path = folder / f"{split}.bin"
        header = read_header(path, check_folder=False)
        if header["vocab_size"] != vocab_size:
            raise PreparedFolderError(path, f"made for vocabulary {header['vocab_size']}, but "
                                      f"the folder's tokenizer has {vocab_size}")
        expected = meta["counts"][split]["tokens"]
        if header["count"] != expected:
            raise PreparedFolderError(path, f"holds {header['count']:,} tokens but meta.json "
                                      f"says {expected:,}")
        tokens = read_tokens(path, check_folder=False)
        _check_ids(path, tokens, vocab_size)
        arrays[split] = tokens
    return Prepared(folder, meta, tokenizer, arrays["train"], arrays["val"], arrays["test"])


def _check_ids(path: Path, tokens: np.ndarray, vocab_size: int, block: int = 1 << 24) -> None:
    """Refuse ids outside the vocabulary (a flipped bit), a block at a time: one pass over the
    file, which is far cheaper than a training run failing deep inside an embedding lookup."""
    for start in range(0, len(tokens), block):
        high = int(tokens[start:start + block].max())
        if high >= vocab_size:
            raise PreparedFolderError(path, f"holds token id {high}, outside the vocabulary of "
                                      f"{vocab_size} (a corrupt file)")


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------


def source_fingerprint(item: str | os.PathLike) -> dict:
    """A cheap description of one input that changes when the input does (see the module doc).

    ``{"spec": "builtin:pydoc", "python": "3.12.3"}`` for a built-in corpus;
    ``{"spec": "/abs/path", "files": n, "bytes": total, "stat_sha256": "..."}`` for a path.
    """
    from tinyllm.data.corpus import iter_files

    item = os.fspath(item)
    if item.startswith(BUILTIN_PREFIX):
        return {"spec": item, "python": platform.python_version()}
    root = Path(item).absolute()
    digest = hashlib.sha256()
    files = total = 0
    for path in iter_files([root]):
        try:
            info = path.stat()
            size, mtime = info.st_size, info.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # unreadable now; reported when prepare reads it
        relative = path.relative_to(root).as_posix() if path != root else ""
        digest.update(f"{relative}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
        files += 1
        total += max(size, 0)
    return {"spec": str(root), "files": files, "bytes": total, "stat_sha256": digest.hexdigest()}


def tokenizer_sha256(tokenizer) -> str:
    """SHA-256 of a tokenizer's canonical JSON (a `BPETokenizer`, or the path of a saved one).

    The tokenizer is written with its own `save` into a temporary file and that file hashed, so
    the hash depends on the tables only, not on how a given file was formatted.
    """
    if isinstance(tokenizer, str | os.PathLike):
        from tinyllm.tokenizer import BPETokenizer

        tokenizer = BPETokenizer.load(tokenizer)
    with tempfile.TemporaryDirectory(prefix="tinyllm-tok-") as tmp:
        path = Path(tmp) / "tokenizer.json"
        tokenizer.save(path)
        return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(inputs, vocab_size: int | None = 4096, tokenizer=None, *, pattern: str = "gpt4",
               tokenizer_sample_mb: float = 20.0, val_fraction: float = 0.1,
               test_fraction: float = 0.1, filters=None, dedup_threshold: float = 0.8,
               near_dedup: bool = True) -> dict:
    """What a folder prepared with these arguments is made from (the arguments of `prepare`).

    With a `tokenizer` (object or path) the vocabulary size, pattern and sample size are not
    part of it (the tokenizer decides them); its hash is. The dict is JSON-ready and is stored
    as ``meta.json["provenance"]``; compare it with `check_prepared`.
    """
    from tinyllm.data.clean import FilterConfig

    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    filters = filters or FilterConfig()
    if tokenizer is None:
        tok = {"sha256": None, "vocab_size": vocab_size, "pattern": pattern,
               "sample_mb": tokenizer_sample_mb}
    else:
        tok = {"sha256": tokenizer_sha256(tokenizer), "vocab_size": None, "pattern": None,
               "sample_mb": None}
    return {
        "sources": [source_fingerprint(item) for item in inputs],
        "tokenizer": tok,
        "cleaning": {"version": CLEANING_VERSION, "filters": asdict(filters),
                     "dedup_threshold": dedup_threshold, "near_dedup": near_dedup},
        "splits": {"rule": SPLIT_RULE_VERSION, "val_fraction": val_fraction,
                   "test_fraction": test_fraction},
    }


def _describe_sources(sources) -> str:
    return ", ".join(str(s.get("spec")) if isinstance(s, dict) else repr(s) for s in sources)


def _source_differences(old, new) -> list[str]:
    if not isinstance(old, list):
        return ["sources: not recorded"]
    if [s.get("spec") if isinstance(s, dict) else s for s in old] != [s["spec"] for s in new]:
        return [f"sources: prepared from {_describe_sources(old)}, now {_describe_sources(new)}"]
    out = []
    for before, now in zip(old, new):
        if before != now:
            if "python" in now:
                out.append(f"sources: {now['spec']} comes from Python {now['python']}, was "
                           f"{before.get('python')}")
            else:
                out.append(f"sources: {now['spec']} changed since it was prepared "
                           f"({before.get('files')} files, {before.get('bytes')} bytes then; "
                           f"{now['files']} files, {now['bytes']} bytes now)")
    return out


def _dict_differences(label: str, old, new) -> list[str]:
    if not isinstance(old, dict):
        return [f"{label}: not recorded"]
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _dict_differences(f"{label} {key}", a, b)
        elif a != b:
            out.append(f"{label} {key}: prepared with {a!r}, now {b!r}")
    return out


def check_prepared(folder: str | os.PathLike, expected: dict) -> list[str]:
    """How the folder differs from `expected` (a `provenance` dict): one line per difference.

    An empty list means the folder is complete and was made from exactly what is expected. A
    missing, incomplete, corrupt or older folder gives a single line saying so (it never
    raises for those), so a caller can simply prepare again whenever the list is not empty.
    """
    try:
        meta = read_meta(folder)
    except DataFileError as err:
        return [str(err)]
    recorded = meta["provenance"]
    differences = _source_differences(recorded.get("sources"), expected["sources"])
    old_tok, new_tok = recorded.get("tokenizer"), expected["tokenizer"]
    if isinstance(old_tok, dict) and old_tok.get("sha256") != new_tok["sha256"]:
        if new_tok["sha256"] is None:
            differences.append("tokenizer: prepared with a given tokenizer, now one is trained")
        elif old_tok.get("sha256") is None:
            differences.append("tokenizer: prepared with a trained tokenizer, now one is given")
        else:
            differences.append(f"tokenizer: prepared with tokenizer sha256 "
                               f"{str(old_tok['sha256'])[:12]}…, now {new_tok['sha256'][:12]}…")
    else:
        differences += _dict_differences("tokenizer", old_tok, new_tok)
    differences += _dict_differences("cleaning", recorded.get("cleaning"), expected["cleaning"])
    differences += _dict_differences("splits", recorded.get("splits"), expected["splits"])
    return differences
