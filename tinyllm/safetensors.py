"""Read and write the safetensors format with NumPy alone (never pickle).

A file is: 8 bytes (little-endian u64) giving the header length N; N bytes of JSON mapping each
tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data section),
plus an optional "__metadata__" of string pairs; then the raw little-endian tensor bytes. This is
the format the rest of the ecosystem (HF safetensors, transformers) reads.
"""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
    "U64": np.uint64, "BOOL": np.bool_,
}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A file that is not valid safetensors; the message names the file and the problem."""


def atomic_write(path, write_fn, mode="wb"):
    """Write through a temporary file in the same folder, fsync it, then rename it over `path`:
    a crash leaves either the old file or the new one, never half of one."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(folder):
    """Make a rename in `folder` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_file(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write `{name: array}` to `path` atomically, in the order given."""
    header, offset, arrays = {}, 0, []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(np.asarray(arr))
        if arr.dtype not in _CODES:
            raise TypeError(f"safetensors: can't store {name!r} of dtype {arr.dtype}")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _CODES[arr.dtype.newbyteorder("=")], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # align the data section to 8 bytes

    def write(f):
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for arr in arrays:
            f.write(arr.tobytes())

    atomic_write(path, write)


def read_regular_file(path, error=ValueError, limit=None) -> bytes:
    """The bytes of `path` (its first `limit` bytes if given), which must be a regular file and
    not a symbolic link (a link could point a run folder at anything; a FIFO or device would
    block or never end): else `error`."""
    path = os.fspath(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISLNK(info.st_mode):
        raise error(f"{path}: is a symbolic link; refusing to follow it (copy the file instead)")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: is not a regular file")
    try:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err})") from None


def _parse_header(raw: bytes, size: int, path: str) -> tuple[dict, dict, int]:
    """(header, metadata, header length) from the first bytes `raw` of a file of `size` bytes:
    the 8-byte length, then the JSON header (checked to be an object, metadata strings)."""
    if size < 8:
        raise SafetensorsError(f"{path}: too short to be a safetensors file ({size} bytes)")
    n = int.from_bytes(raw[:8], "little")
    if n > min(_MAX_HEADER, size - 8):
        raise SafetensorsError(f"{path}: header length {n} is larger than the file (truncated?)")
    try:
        header = json.loads(raw[8:8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise SafetensorsError(f"{path}: header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{path}: __metadata__ is not a map of strings")
    return header, metadata, n


def _entry(path, name, info, data_bytes):
    """(dtype, shape, begin, end) of one header entry, every field checked, its bytes inside a
    data section of `data_bytes` bytes."""
    try:
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        shape = tuple(_exact_int(s) for s in info["shape"])
        begin, end = (_exact_int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise SafetensorsError(f"{path}: tensor {name!r} has a malformed header entry") from None
    if any(d < 0 for d in shape):
        raise SafetensorsError(f"{path}: tensor {name!r} has a negative dimension {shape}")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if not 0 <= begin <= end <= data_bytes or end - begin != expected:
        raise SafetensorsError(
            f"{path}: tensor {name!r} claims bytes [{begin}, {end}) for shape {shape} "
            f"({expected} bytes) but the data section has {data_bytes} bytes (truncated?)"
        )
    return dtype, shape, begin, end


def read_shapes(path) -> dict:
    """{name: shape} of a safetensors file, from its header alone: what a model built from a
    configuration must match, checked before the model is built (and its memory taken)."""
    path = os.fspath(path)
    first = read_regular_file(path, SafetensorsError, limit=8)  # the same refusals as load_file
    n = int.from_bytes(first, "little") if len(first) == 8 else 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        raw = f.read(8 + min(n, _MAX_HEADER))
    header, _, n = _parse_header(raw, size, path)
    return {name: _entry(path, name, info, size - 8 - n)[1] for name, info in header.items()}


def load_file(path) -> tuple[dict, dict]:
    """Read a safetensors file: ({name: array}, metadata). Every offset and size is checked;
    anything malformed raises `SafetensorsError` naming the file."""
    path = os.fspath(path)
    raw = read_regular_file(path, SafetensorsError)
    header, metadata, n = _parse_header(raw, len(raw), path)
    data = memoryview(raw)[8 + n:]
    tensors = {}
    for name, info in header.items():
        dtype, shape, begin, end = _entry(path, name, info, len(data))
        arr = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        tensors[name] = arr.astype(dtype.newbyteorder("="), copy=True)
    return tensors, metadata


def _exact_int(value) -> int:
    """A JSON integer (not a bool, float or string that merely converts to one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an integer: {value!r}")
    return value
