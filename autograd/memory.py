"""Keep freed array memory in the process, so a training step does not pay the kernel for it.

A training step allocates and frees the same large arrays every step: activations, their
gradients, attention scores, each a few megabytes. glibc's `malloc` gives such blocks back to the
kernel when they are freed: blocks over its mmap threshold are unmapped, and a free region over
its trim threshold at the top of the heap is released. The next step's arrays then come back as
fresh pages, and the kernel zeroes each 4 KB page on its first touch (a page fault). At config S
that was ~28,000 page faults, 60-80 ms of kernel time in a ~220 ms step.

`keep_freed_memory()` raises both thresholds (`mallopt`): blocks up to 32 MB (glibc's largest
mmap threshold) come from the heap, and the heap is not trimmed until 2 GB of it lies free at
its top. After the first step every array reuses memory the process already holds. The peak
resident memory does not grow (the same blocks are reused; blocks over 32 MB are still given
back); what changes is that memory freed after the peak stays with the process, as it does with
PyTorch's GPU caching allocator.

`import autograd` calls it once, on Linux with glibc (elsewhere `mallopt` does not exist and
nothing happens). Set AUTOGRAD_KEEP_FREED_MEMORY=0 to leave malloc's defaults alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV_VAR = "AUTOGRAD_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20  # the largest value glibc accepts on 64-bit machines
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int: 2 GB


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse (see the module docstring). Returns True when
    the settings were applied, False where there is no glibc `mallopt` or the user said no."""
    if os.environ.get(ENV_VAR, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # Each call returns 1 on success; the mmap threshold first, as setting it also switches off
    # glibc's own adjustment of both thresholds.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
