"""Reading a Hugging Face model folder's weights without copying them, and writing ours tensor
by tensor.

A safetensors file is an 8-byte header length, a JSON header, then raw tensor bytes (see
tinyllm/safetensors.py). Here the data section is memory-mapped: each tensor is a view into the
file that the operating system pages in when it is read, so importing a 500 MB checkpoint never
holds a second copy in memory. The writer takes a *recipe* per tensor (a function that makes the
array) and makes each one only when its bytes are written, so at most one converted tensor is
alive at a time.

Pickled checkpoints (`pytorch_model.bin`, `*.pt`, `*.ckpt`) are refused, never opened: unpickling
runs whatever code the file names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tinyllm.safetensors import SafetensorsError, atomic_write

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
           "BF16": np.uint16}  # bfloat16: NumPy has none, read as raw 16-bit words (see below)
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")

CONVERT_HINT = ("convert it to safetensors first, with torch and safetensors installed: "
                "python -c \"import sys, torch; from transformers import AutoModelForCausalLM; "
                "AutoModelForCausalLM.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1], "
                "safe_serialization=True)\" DIR")


def bf16_to_f32(words: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16-bit words up and reinterpret."""
    return (words.astype(np.uint32) << 16).view(np.float32)


def open_safetensors(path) -> dict:
    """{name: (dtype code, array view into the memory-mapped file)} for one safetensors file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path}: too short to be a safetensors file")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise SafetensorsError(f"{path}: header length {n} is larger than the file (truncated?)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SafetensorsError(f"{path}: header is not valid JSON ({err})") from None
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    if data_len == 0:
        return {}
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n, shape=(data_len,))
    tensors = {}
    for name, info in header.items():
        try:
            code = info["dtype"]
            dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor {name!r} has a malformed or unsupported "
                                   f"header entry {info!r}") from None
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= begin <= end <= data_len or end - begin != expected:
            raise SafetensorsError(f"{path}: tensor {name!r} claims bytes [{begin}, {end}) for "
                                   f"shape {shape} but the data section has {data_len} bytes")
        tensors[name] = (code, data[begin:end].view(dtype).reshape(shape))
    return tensors


def as_float32(code: str, array: np.ndarray) -> np.ndarray:
    """The tensor as float32 (a view, no copy, when it already is)."""
    if code == "BF16":
        return bf16_to_f32(array)
    return array if array.dtype == np.float32 else array.astype(np.float32)


def refuse_pickles(folder: Path) -> None:
    """A folder whose weights exist only as pickles gets one line naming the conversion."""
    for name in _PICKLES:
        if (folder / name).exists():
            raise ValueError(f"{folder / name}: pickled weights are never loaded (unpickling can "
                             f"run arbitrary code); {CONVERT_HINT}")
    for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl"):
        found = sorted(folder.glob(pattern))
        if found:
            raise ValueError(f"{found[0]}: pickled weights are never loaded; {CONVERT_HINT}")
    raise FileNotFoundError(f"{folder}: no model.safetensors (nor model.safetensors.index.json)")


def open_weights(folder) -> dict:
    """All tensors of an HF folder, from `model.safetensors` or the shards its
    `model.safetensors.index.json` names: {name: (dtype code, memory-mapped array)}."""
    folder = Path(folder)
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.exists():
        return open_safetensors(single)
    if not index.exists():
        refuse_pickles(folder)
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{index}: not a safetensors index (no weight_map: {err})") from None
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        if "/" in shard or "\\" in shard or not shard.endswith(".safetensors"):
            raise ValueError(f"{index}: shard name {shard!r} is not a .safetensors file here")
        tensors.update(open_safetensors(folder / shard))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise ValueError(f"{index}: names tensors its shards lack, e.g. {missing[0]!r}")
    return tensors


def write_safetensors(path, recipes: dict, metadata: dict | None = None) -> None:
    """Write safetensors from `{name: (shape, make)}`, `make()` giving the float32 array; each
    array is made just before its bytes are written, so one converted tensor is alive at a time.
    Written atomically (temporary file, then rename)."""
    header, offset = {}, 0
    for name, (shape, _) in recipes.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)

    def write(f):
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name, (shape, make) in recipes.items():
            array = np.ascontiguousarray(make(), dtype="<f4")
            if array.shape != tuple(shape):
                raise ValueError(f"{name}: made shape {array.shape}, expected {tuple(shape)}")
            f.write(memoryview(array).cast("B"))

    atomic_write(os.fspath(path), write)
