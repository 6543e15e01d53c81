"""Fuzzing the data readers: token files, ``meta.json`` and whole prepared folders.

Each reader gets valid files spoiled by hypothesis (truncated, bits flipped, bytes overwritten,
inserted or deleted, header fields set to huge values, JSON values replaced by values of the
wrong type or shape) and must either read the file (a spoilt byte can leave it valid) or refuse
it with one error: a ValueError subclass whose one-line message names the file. Any other
exception fails the test. Symlinks, folders and FIFOs are checked by hand at the end.

The default suite runs a bounded number of examples per reader (a second or two each); the
``slow`` variants run many more and print what they found (``pytest -m slow -s``).
"""

import collections
import json
import os
import re
import shutil
import struct
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllm.data.dataset import DataFileError, read_header, read_tokens, write_tokens

FAST = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))


def slow(test):
    """Mark `test` slow, and run it only when asked for (``-m slow``): the default suite stays
    fast whether or not it deselects slow tests."""
    test = pytest.mark.slow(test)
    return pytest.mark.skipif("'slow' not in config.getoption('markexpr', '')",
                              reason="long fuzzing; run with -m slow")(test)

# outcome counts per reader: how many examples ran and what happened
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

# --------------------------------------------------------------------------------------------
# Spoiling files
# --------------------------------------------------------------------------------------------

KINDS = ["truncate", "flip", "overwrite", "insert", "delete", "empty", "repeat", "huge_number"]


@st.composite
def spoil(draw, base: bytes, kinds=tuple(KINDS), header=None):
    """`base` with one to three random mutations. `header` lists (offset, struct format) of
    binary header fields that the "header_field" mutation may set to extreme values."""
    data = bytearray(base)
    kinds = list(kinds) + (["header_field"] * 2 if header else [])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds))
        n = len(data)
        pos = draw(st.integers(0, max(0, n - 1)))
        if kind == "truncate":
            del data[pos:]
        elif kind == "flip" and n:
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(0, n - 1))
                data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "empty":
            data = bytearray()
        elif kind == "repeat" and n:
            end = min(n, pos + draw(st.integers(1, 200)))
            data[end:end] = data[pos:end] * draw(st.integers(1, 5))
        elif kind == "huge_number":
            digits = [i for i, b in enumerate(data) if 48 <= b <= 57]
            if digits:
                i = draw(st.sampled_from(digits))
                data[i:i + 1] = draw(st.sampled_from([b"99999999999999999999", b"-1", b"1e400",
                                                      b"18446744073709551616", b"0.5"]))
        elif kind == "header_field":
            offset, fmt = draw(st.sampled_from(header))
            bits = struct.calcsize(fmt) * 8
            value = draw(st.sampled_from([0, 1, 3, 2**bits - 1, 2**(bits - 1), 2**31, 2**16 + 1]))
            if offset + struct.calcsize(fmt) <= len(data):
                data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value[:20]):
            yield from _paths(item, prefix + (i,))


@st.composite
def spoil_json(draw, base: bytes):
    """`base` (JSON) with one value replaced by another of any type, or a key deleted."""
    doc = json.loads(base)
    path = draw(st.sampled_from(list(_paths(doc))[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(doc, allow_nan=True).encode()


def expect_clean_refusal(name, reader, path, errors, must_name):
    """Run `reader(path)`; record whether it accepted or refused; a refusal must be one of
    `errors`, on one line, naming `must_name`. Anything else propagates and fails the test."""
    try:
        result = reader(path)
    except errors as err:
        message = str(err)
        assert str(must_name) in message, message
        assert "\n" not in message, message
        OUTCOMES[name]["refused: " + _category(message, must_name)] += 1
        return None
    OUTCOMES[name]["accepted"] += 1
    return result


def _category(message: str, path) -> str:
    """"file: reason" with the numbers blanked, so that like refusals count together."""
    rest = message.split(str(path), 1)[-1].lstrip("/")
    where, _, reason = rest.partition(": ")
    where = re.sub(r", line \d+", ", line N", where) if where else Path(str(path)).name
    return f"{where}: {re.sub(r'[0-9]+', 'N', reason.split('(')[0]).strip()[:60]}"


def report(name):
    counts = OUTCOMES[name]
    print(f"\n{name}: {sum(counts.values())} examples")
    for what, n in counts.most_common():
        print(f"  {n:6d}  {what}")


# --------------------------------------------------------------------------------------------
# Token files
# --------------------------------------------------------------------------------------------

TOKEN_HEADER = [(8, "<I"), (12, "<I"), (16, "<Q"), (24, "<Q")]


@cache
def token_file_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.bin"
        write_tokens(path, np.random.default_rng(0).integers(0, 300, 200), 300)
        return path.read_bytes()


def _read_token_file(path):
    tokens = read_tokens(path)
    header = read_header(path)
    assert len(tokens) == header["count"]
    assert os.path.getsize(path) == 32 + header["count"] * header["dtype"].itemsize
    return tokens


def _fuzz_token_file(data, name):
    raw = data.draw(spoil(token_file_bytes(), header=TOKEN_HEADER))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokens.bin"
        path.write_bytes(raw)
        expect_clean_refusal(name, _read_token_file, path, DataFileError, path)


@FAST
@given(st.data())
def test_fuzz_token_files(data):
    _fuzz_token_file(data, "token file (fast)")


@slow
@SLOW
@given(st.data())
def test_fuzz_token_files_long(data):
    _fuzz_token_file(data, "token file")


# --------------------------------------------------------------------------------------------
# Prepared folders: meta.json, tokenizer.json and the token files together
# --------------------------------------------------------------------------------------------


@cache
def prepared_folder() -> Path:
    from tinyllm.data.prepare import prepare

    root = Path(tempfile.mkdtemp(prefix="tinyllm-fuzz-"))
    (root / "in").mkdir()
    words = "the quick brown fox jumps over a lazy dog while owls watch".split()
    for i in range(24):
        text = " ".join(np.random.default_rng(i).choice(words, 40))
        (root / "in" / f"{i}.txt").write_text(f"Note {i}: {text}.")
    prepare([root / "in"], root / "data", vocab_size=300, progress=False)
    return root / "data"


def _fuzz_folder(data, name, target):
    from tinyllm.data.prepared import load_prepared
    from tinyllm.tokenizer.io import TokenizerFileError

    base = prepared_folder()
    if target is None:
        target = data.draw(st.sampled_from(["meta.json", "tokenizer.json", "train.bin",
                                            "val.bin", "test.bin"]))
    raw = (base / target).read_bytes()
    if target.endswith(".json") and data.draw(st.booleans()):
        spoilt = data.draw(spoil_json(raw))
    else:
        spoilt = data.draw(spoil(raw, header=TOKEN_HEADER if target.endswith(".bin") else None))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        shutil.copytree(base, folder)
        (folder / target).write_bytes(spoilt)
        loaded = expect_clean_refusal(name, load_prepared, folder,
                                      (DataFileError, TokenizerFileError), folder)
        if loaded is not None:  # accepted: then it is consistent
            for split in ("train", "val", "test"):
                tokens = getattr(loaded, split)
                assert len(tokens) == loaded.meta["counts"][split]["tokens"]
                assert len(tokens) == 0 or int(tokens.max()) < loaded.tokenizer.vocab_size


@FAST
@given(st.data())
def test_fuzz_meta_json(data):
    _fuzz_folder(data, "meta.json (fast)", "meta.json")


@FAST
@given(st.data())
def test_fuzz_prepared_folder(data):
    _fuzz_folder(data, "prepared folder (fast)", None)


@slow
@SLOW
@given(st.data())
def test_fuzz_meta_json_long(data):
    _fuzz_folder(data, "meta.json", "meta.json")


@slow
@SLOW
@given(st.data())
def test_fuzz_prepared_folder_long(data):
    _fuzz_folder(data, "prepared folder", None)


def test_an_eot_token_of_the_wrong_type_is_refused():
    # found by test_fuzz_meta_json_long: a list as eot_token raised TypeError
    from tinyllm.data.prepared import PreparedFolderError, load_prepared

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        shutil.copytree(prepared_folder(), folder)
        meta = json.loads((folder / "meta.json").read_text())
        meta["tokenizer"]["eot_token"] = []
        (folder / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(PreparedFolderError, match="eot_token"):
            load_prepared(folder)


@slow
def test_print_fuzz_report():
    """Runs last in this file: what the long variants found."""
    for name in ("token file", "meta.json", "prepared folder"):
        if name in OUTCOMES:
            report(name)


# --------------------------------------------------------------------------------------------
# Symlinks, folders, FIFOs
# --------------------------------------------------------------------------------------------


def odd_paths(tmp_path):
    """A dangling symlink, a symlink loop, a folder, a symlink to a folder and a FIFO."""
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "folder").mkdir()
    (tmp_path / "to_folder").symlink_to(tmp_path / "folder")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would wait forever
    return [tmp_path / n for n in ("dangling", "loop", "folder", "to_folder", "fifo")]


def test_token_file_readers_refuse_odd_paths(tmp_path):
    for path in odd_paths(tmp_path):
        with pytest.raises(DataFileError, match=str(path)):
            read_tokens(path)
    (tmp_path / "real.bin").write_bytes(token_file_bytes())
    (tmp_path / "link.bin").symlink_to(tmp_path / "real.bin")
    assert len(read_tokens(tmp_path / "link.bin")) == 200  # a link to a good file is fine


def test_prepared_folder_readers_refuse_odd_meta(tmp_path):
    from tinyllm.data.prepared import PreparedFolderError, read_meta

    for path in odd_paths(tmp_path):
        folder = tmp_path / f"f_{path.name}"
        folder.mkdir()
        os.replace(path, folder / "meta.json") if not path.is_dir() or path.is_symlink() \
            else shutil.move(path, folder / "meta.json")
        with pytest.raises(PreparedFolderError, match="meta.json"):
            read_meta(folder)
