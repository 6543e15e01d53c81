"""Staging a prepared folder: built aside, swapped in whole, never half-written.

`tinyllm.data.prepare` writes everything into ``.NAME.preparing-PID`` next to the final folder
and calls `move_into_place` at the end. Replacing an earlier folder takes two renames (old
folder aside, new one in), so a crash between them leaves no folder under the final name, never
a mixture. The kept documents between prepare's two passes live in a temporary file of
length-prefixed UTF-8 strings (`write_doc`, `read_docs`) inside the staging folder.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["check_replaceable", "remove_stale_temporaries", "move_into_place",
           "write_json_atomically", "write_doc", "read_docs", "PREPARED_FILES"]  # fmt: skip

# Files that a prepared folder may hold: only a folder made of these is replaced.
PREPARED_FILES = {"train.bin", "val.bin", "test.bin", "meta.json", "tokenizer.json",
                  ".kept_documents.tmp", "train.bin.partial", "val.bin.partial",
                  "test.bin.partial", "meta.json.partial"}  # fmt: skip
_LENGTH = struct.Struct("<I")  # length prefix of each document in the temporary file


# --------------------------------------------------------------------------------------------
# The output folder: built aside, renamed into place
# --------------------------------------------------------------------------------------------


def check_replaceable(out_dir: Path) -> None:
    """Refuse to replace a folder that holds anything but a prepared folder's files."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise ValueError(f"{out_dir}: exists and is not a folder; choose another output folder")
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in PREPARED_FILES)
    if foreign:
        raise ValueError(
            f"{out_dir}: exists and holds files that are not prepared data ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose another output folder"
        )


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete temporary folders left by a prepare into `out_dir` that was killed."""
    for path in out_dir.parent.glob(f".{out_dir.name}.preparing-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def move_into_place(temp_dir: Path, out_dir: Path) -> None:
    """Rename the finished `temp_dir` to `out_dir`, replacing an old prepared folder."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.replaced-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
    os.replace(temp_dir, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json_atomically(path: Path, data: dict) -> None:
    temp = path.with_name(path.name + ".partial")
    with open(temp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


# --------------------------------------------------------------------------------------------
# The temporary file of kept documents: a length-prefixed UTF-8 string per document
# --------------------------------------------------------------------------------------------


def write_doc(f, text: str) -> int:
    data = text.encode("utf-8")
    f.write(_LENGTH.pack(len(data)))
    f.write(data)
    return len(data)


def read_docs(path: Path) -> Iterator[str]:
    with open(path, "rb") as f:
        while header := f.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            yield f.read(length).decode("utf-8")
