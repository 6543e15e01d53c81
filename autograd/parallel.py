"""A small thread pool for the element-wise work that NumPy runs on one core.

NumPy runs a ufunc (exp, tanh, a multiply) on one thread; only matrix products use the BLAS's
threads. The big element-wise ops of a training step (GELU, layer norm, attention's softmax)
already work block by block, each block in the CPU cache; `run_blocks` hands those blocks out to
a few threads. A ufunc releases the GIL while it loops over a block, so the threads really run at
once; what stays serial is Python's few microseconds per NumPy call.

This pays only when the other cores are free. After each matrix product, OpenBLAS's idle workers
busy-wait on them for about 2**OPENBLAS_THREAD_TIMEOUT cycles (by default ~0.1 s), and a pool
thread then only fights them. So the pool is on by default only where that wait is bounded (the
`tinyllm` command sets OPENBLAS_THREAD_TIMEOUT before NumPy loads; see tinyllm/blas_spin.py), with
as many threads as the BLAS may use (OPENBLAS_NUM_THREADS or OMP_NUM_THREADS, else the cores this
process may run on). AUTOGRAD_NUM_THREADS, or `set_num_threads`, decides otherwise; 1 turns it off.
When the pool starts it shortens the interpreter's GIL switch interval (see _executor), unless
the program has set one of its own.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import numpy as np

_MAX_THREADS = 8
_state = {"threads": None, "executor": None}
_inside = threading.local()  # set in pool threads: work they start runs inline, never nested


def _default_threads() -> int:
    chosen = os.environ.get("AUTOGRAD_NUM_THREADS")
    if chosen is None and "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        return 1  # OpenBLAS's workers may spin on the other cores: a pool would fight them
    if chosen is not None and chosen.strip().isdigit() and int(chosen) > 0:
        return min(int(chosen), _MAX_THREADS)
    return min(cpu_threads(), _MAX_THREADS)


def cpu_threads() -> int:
    """The threads this process may compute on: OPENBLAS_NUM_THREADS or OMP_NUM_THREADS when
    set (as the BLAS reads them), else the cores it may run on."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def num_threads() -> int:
    """How many threads `run_blocks` uses (1: everything on the calling thread)."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Use `n` threads for element-wise work from now on (1 turns the pool off)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    _shutdown()
    _state["threads"] = min(n, _MAX_THREADS)


def run_blocks(work, blocks, uses_blas=False) -> None:
    """Call `work(block)` for every block, the blocks split into contiguous runs, one per
    thread (the calling thread takes the first). Returns when all are done; an exception in any
    block is raised here. `work` must only write to its own block's part of any output.

    `uses_blas`: the blocks make matrix products (attention). The BLAS would then start its own
    threads inside each of ours, more threads than cores, and they spin against each other
    (attention at config M ran three times slower). So the BLAS is held to one thread while the
    blocks run, where its thread count can be set (OpenBLAS); elsewhere such blocks run on the
    calling thread alone, with the BLAS's threads."""
    n = min(num_threads(), len(blocks))
    blas = openblas_threads() if uses_blas and n > 1 else None
    if n <= 1 or getattr(_inside, "flag", False) or (uses_blas and blas is None):
        for blk in blocks:
            work(blk)
        return
    per = -(-len(blocks) // n)
    runs = [blocks[i:i + per] for i in range(0, len(blocks), per)]
    executor = _executor()
    if blas is not None:
        get_threads, set_threads = blas
        before = get_threads()
        set_threads(1)
    futures = [executor.submit(_run_in_pool, work, run) for run in runs[1:]]
    try:
        for blk in runs[0]:
            work(blk)
    finally:
        for f in futures:
            f.result()  # waits, and raises what the block raised
        if blas is not None:
            set_threads(before)


@contextlib.contextmanager
def inline():
    """Inside this block, `run_blocks` and `binary` on this thread do all their work on it:
    for a thread that is itself one of several working at once (autograd.nn.shards)."""
    before = getattr(_inside, "flag", False)
    _inside.flag = True
    try:
        yield
    finally:
        _inside.flag = before


# Below this many elements a binary op runs on the calling thread: waking a pool thread costs
# tens of microseconds, and at config S a residual add (2**18 elements) measured slower on two
# threads than on one (1.9 -> 3.7 ms a step), GELU's backward (2**20) faster (2.9 -> 2.4 ms).
BINARY_MIN_ELEMENTS = 1 << 19


def binary(ufunc, a, b):
    """`ufunc(a, b)` (np.add, np.multiply...) for two NumPy arrays of one shape and dtype, cut
    into one contiguous part per thread. Such a pass reads two arrays and writes a third, mostly
    outside the cache (a gradient times a saved derivative), and one core does
    not saturate the memory: two threads make it ~1.5x faster. Anything else (broadcasting,
    small or strided arrays, CuPy, one thread) is just `ufunc(a, b)`."""
    n = num_threads()
    if (n <= 1 or type(a) is not np.ndarray or type(b) is not np.ndarray
            or a.shape != b.shape or a.dtype != b.dtype or a.size < BINARY_MIN_ELEMENTS
            or not (a.flags.c_contiguous and b.flags.c_contiguous)
            or getattr(_inside, "flag", False)):
        return ufunc(a, b)
    out = np.empty_like(a)
    fa, fb, fo = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    per = -(-a.size // n)
    run_blocks(lambda blk: ufunc(fa[blk], fb[blk], out=fo[blk]),
               [slice(i, i + per) for i in range(0, a.size, per)])
    return out


def openblas_threads():
    """(get, set) for the number of threads of the OpenBLAS that NumPy loaded, or None when it
    cannot be found (another BLAS, or not Linux). Found once, by its path in /proc/self/maps
    (NumPy loads it privately, so it is not among the process's global symbols)."""
    if "blas" not in _state:
        _state["blas"] = None
        try:
            with open("/proc/self/maps") as maps:
                paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
        except OSError:
            paths = []
        import ctypes

        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"),
                                   ("scipy_openblas", ""), ("openblas", "")):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, (ctypes.c_int,)
                    _state["blas"] = (get, set_)
                    return _state["blas"]
    return _state["blas"]


def _run_in_pool(work, run):
    _inside.flag = True
    for blk in run:
        work(blk)


# The interpreter's default switch interval (sys.getswitchinterval()), and the pool's. A thread
# whose NumPy call has finished needs the GIL back; if another thread holds it running Python
# (the engine's bookkeeping between ops), the waiter asks for it only after the switch
# interval. At the default 5 ms a pool thread could sit out a whole block of work; at 0.1 ms
# the `S` training step ran 0-4% faster (107.9 against 111.9 ms over three alternating runs;
# bench_train.py, two alternations of 5 rounds: 20,086 / 19,531 and 20,025 / 20,025 tokens/s).
DEFAULT_SWITCH_INTERVAL = 0.005
POOL_SWITCH_INTERVAL = 1e-4


def shorten_switch_interval() -> None:
    """Set POOL_SWITCH_INTERVAL, unless the program has set an interval of its own: for
    threads that compute at once and hand the GIL to each other between NumPy calls."""
    if sys.getswitchinterval() == DEFAULT_SWITCH_INTERVAL:
        sys.setswitchinterval(POOL_SWITCH_INTERVAL)


def _executor():
    if _state["executor"] is None:
        from concurrent.futures import ThreadPoolExecutor

        shorten_switch_interval()
        _state["executor"] = ThreadPoolExecutor(num_threads() - 1,
                                                thread_name_prefix="autograd-pool")
    return _state["executor"]


def _shutdown():
    executor, _state["executor"] = _state["executor"], None
    if executor is not None:
        executor.shutdown(wait=True)


def _forget_after_fork():
    # A forked child has none of the parent's threads: start a new pool there when needed.
    _state["executor"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
