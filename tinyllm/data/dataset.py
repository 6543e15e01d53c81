"""Token shards on disk and the batch loader that feeds training.

A corpus is tokenized once and stored as a flat array of token ids in a ``.bin`` file:

    offset  size  field
    0       8     magic b"TLLMTOK\\0"
    8       4     format version (little-endian uint32, currently 1)
    12      4     bytes per token: 2 (uint16) or 4 (uint32)
    16      8     number of tokens (uint64)
    24      8     vocabulary size (uint64)
    32      ...   the tokens, little-endian

uint16 is used whenever the vocabulary fits (up to 65,536 ids), halving disk and page-cache
use. `read_tokens` checks the header against the file size and memory-maps the tokens, so a
multi-gigabyte shard costs no memory until its pages are touched. A file is written under a
temporary name (``NAME.partial``) and renamed when complete, so a file under its final name is
whole. Inside a prepared folder (one with a ``meta.json``) the readers also refuse the file
unless the folder carries the completion marker (see `tinyllm.data.prepared`). Every problem
is a `DataFileError` (a ValueError) whose message starts with the file's name.

`BatchLoader` draws random windows from such an array. Batch number k is drawn from a
generator seeded with ``(seed, k)``, so its whole state is the pair (seed, step): saving it
in a checkpoint and restoring it makes training continue with exactly the next batch.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np

__all__ = ["TokenWriter", "write_tokens", "read_tokens", "read_header", "BatchLoader",
           "token_dtype", "DataFileError", "MAGIC", "VERSION", "HEADER_SIZE"]  # fmt: skip

MAGIC = b"TLLMTOK\0"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQ")  # magic, version, bytes per token, token count, vocab size
HEADER_SIZE = _HEADER.size  # 32 bytes


class DataFileError(ValueError):
    """A data file that cannot be used; the message starts with the file's path."""

    def __init__(self, path, message: str) -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {message}")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding ids ``0 .. vocab_size - 1``: uint16 or uint32."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    if vocab_size <= 1 << 32:
        return np.dtype("<u4")
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")


class TokenWriter:
    """Write a token file in pieces, so a corpus never has to be in memory at once.

    The tokens go to ``PATH.partial`` first; `close` writes the final header and renames the
    file to ``PATH``. Leaving the ``with`` block by an exception deletes the partial file, and
    one left by a killed process has a token count of 0 in its header, so it is refused::

        with TokenWriter("train.bin", vocab_size=4096) as w:
            for ids in encoded_documents:
                w.write(ids)
    """

    def __init__(self, path: str | os.PathLike, vocab_size: int) -> None:
        self.path = Path(path)
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self.count = 0
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self._file = open(self.partial_path, "wb")  # closed in close()
        self._file.write(_HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, 0, vocab_size))

    def write(self, tokens) -> None:
        """Append token ids (any integer array-like); ids outside the vocabulary raise."""
        tokens = np.asarray(tokens)
        if tokens.size == 0:
            return
        if not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"token ids must be integers, got dtype {tokens.dtype}")
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(
                f"token id out of range [0, {self.vocab_size}): min {low}, max {high}"
            )
        self._file.write(tokens.astype(self.dtype, copy=False).ravel().tobytes())
        self.count += tokens.size

    def close(self) -> None:
        """Finish the file: final header, flushed to disk, renamed to its final name."""
        if self._file.closed:
            return
        self._file.seek(0)
        self._file.write(
            _HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.count, self.vocab_size)
        )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial_path, self.path)

    def abort(self) -> None:
        """Give up: close and delete the partial file; nothing appears under the final name."""
        if not self._file.closed:
            self._file.close()
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_tokens(path: str | os.PathLike, tokens, vocab_size: int) -> Path:
    """Write `tokens` (a 1-D integer array-like) to a token file at `path`; return the path."""
    with TokenWriter(path, vocab_size) as writer:
        writer.write(np.asarray(tokens).ravel())
    return writer.path


def _check_folder_marker(path: Path) -> None:
    """Refuse a token file in a prepared folder whose ``meta.json`` lacks the completion mark."""
    meta_path = path.parent / "meta.json"
    if not os.path.lexists(meta_path):
        return  # a token file of its own, not part of a prepared folder
    from tinyllm.data.prepared import read_meta

    read_meta(path.parent)


def read_header(path: str | os.PathLike, check_folder: bool = True) -> dict:
    """Read and validate the header of a token file; errors name the file and the problem.

    With `check_folder` (the default), a file inside a prepared folder is refused unless the
    folder is complete (see `tinyllm.data.prepared.read_meta`).
    """
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise DataFileError(path, "not a regular file")
        size = info.st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_SIZE)
    except OSError as err:
        raise DataFileError(path, f"cannot be read ({err.strerror or err})") from None
    if check_folder:
        _check_folder_marker(path)
    if len(raw) < HEADER_SIZE:
        raise DataFileError(path, f"not a tinyllm token file (only {size} bytes, no header)")
    magic, version, itemsize, count, vocab_size = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise DataFileError(path, f"not a tinyllm token file (bad magic {magic!r})")
    if version != VERSION:
        raise DataFileError(path, f"token file version {version}, this tinyllm reads {VERSION}")
    if itemsize not in (2, 4):
        raise DataFileError(path, f"corrupt header (bytes per token {itemsize}, expected 2 or 4)")
    if not 0 < vocab_size <= 1 << (8 * itemsize):
        raise DataFileError(path, f"corrupt header (vocabulary size {vocab_size} does not fit "
                            f"{itemsize}-byte tokens)")
    expected = HEADER_SIZE + count * itemsize
    if count == 0 and size > HEADER_SIZE:
        raise DataFileError(path, "incomplete: its writer was interrupted (the header counts "
                            f"0 tokens, the file has {size - HEADER_SIZE:,} bytes of them)")
    if size != expected:
        problem = "truncated" if size < expected else "has trailing bytes"
        raise DataFileError(
            path, f"file {problem}: header promises {count:,} tokens "
            f"({expected:,} bytes), file has {size:,} bytes"
        )
    return {"version": version, "dtype": np.dtype(f"<u{itemsize}"), "count": count,
            "vocab_size": vocab_size}  # fmt: skip


def read_tokens(path: str | os.PathLike, check_folder: bool = True) -> np.ndarray:
    """Memory-map the tokens of a token file (read-only) after validating its header."""
    header = read_header(path, check_folder)
    if header["count"] == 0:
        return np.zeros(0, dtype=header["dtype"])  # mmap cannot map zero bytes
    try:
        return np.memmap(path, dtype=header["dtype"], mode="r", offset=HEADER_SIZE,
                         shape=(header["count"],))  # fmt: skip
    except (OSError, ValueError) as err:
        raise DataFileError(path, f"cannot be mapped ({err})") from None


class BatchLoader:
    """Random (B, T) training windows from a 1-D token array, reproducible and resumable.

    Each batch takes `batch_size` windows of ``block_size + 1`` consecutive tokens, starting at
    positions drawn uniformly from all possible starts; ``x`` is the first T tokens of each
    window and ``y`` the last T, so ``y[b, t]`` is the token that follows ``x[b, t]``.

    Batch number k depends only on (seed, k), which makes the state tiny and exact: after
    ``loader.load_state_dict(saved)``, ``next_batch()`` returns what the original loader would
    have returned next. With ``shuffle=False`` the windows instead tile the array in order
    (useful for evaluation), wrapping around at the end.
    """

    def __init__(
        self, tokens, batch_size: int, block_size: int, seed: int = 0, shuffle: bool = True
    ) -> None:
        if batch_size < 1 or block_size < 1:
            raise ValueError("batch_size and block_size must be positive")
        self.tokens = tokens
        n = len(tokens)
        if n < block_size + 1:
            raise ValueError(
                f"need at least block_size + 1 = {block_size + 1} tokens, got {n}"
            )
        self.batch_size = batch_size
        self.block_size = block_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.step = 0
        self._offsets = np.arange(block_size + 1)

    @property
    def num_windows(self) -> int:
        """How many different window starts there are (random mode)."""
        return len(self.tokens) - self.block_size

    def _starts(self, step: int) -> np.ndarray:
        if self.shuffle:
            rng = np.random.default_rng([self.seed, step])
            return rng.integers(0, self.num_windows, size=self.batch_size)
        # Sequential: non-overlapping windows in order, window i starting at i * T.
        per_pass = self.num_windows // self.block_size + (self.num_windows % self.block_size > 0)
        index = (step * self.batch_size + np.arange(self.batch_size)) % per_pass
        return index * self.block_size

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (x, y), two int64 arrays of shape (batch_size, block_size)."""
        starts = self._starts(self.step)
        self.step += 1
        windows = np.asarray(self.tokens[starts[:, None] + self._offsets], dtype=np.int64)
        return windows[:, :-1], windows[:, 1:]

    def __iter__(self):
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        """A JSON-serialisable state: everything needed to resume on the next batch."""
        return {"seed": self.seed, "step": self.step, "batch_size": self.batch_size,
                "block_size": self.block_size, "shuffle": self.shuffle,
                "num_tokens": len(self.tokens)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from `state_dict`; the loader must see the same data and shapes."""
        for key in ("batch_size", "block_size", "shuffle", "num_tokens"):
            mine = len(self.tokens) if key == "num_tokens" else getattr(self, key)
            if key in state and state[key] != mine:
                raise ValueError(
                    f"cannot resume: saved {key}={state[key]!r} but this loader has {mine!r}"
                )
        self.seed = int(state["seed"])
        self.step = int(state["step"])
