"""Bound how long OpenBLAS's idle worker threads busy-wait, for the `tinyllm` command.

After each matrix product, OpenBLAS's workers spin for about 2**OPENBLAS_THREAD_TIMEOUT CPU
cycles (its default is 28: ~0.1 s at 2.5 GHz) before they sleep. A training step makes a matrix
product every few milliseconds, so the workers never sleep: they hold the other cores through
the element-wise work in between (softmax, GELU, layer norm, AdamW), where NumPy runs on one
thread, and they fight any other program (or a second pool) for those cores. A smaller timeout
lets them sleep soon after each product; waking them for the next one costs microseconds.

OpenBLAS reads the variable once, when it loads (NumPy's import), and honours values 4..30;
nothing can change it afterwards (threadpoolctl sets the number of BLAS threads, not this wait).
So the command sets it first thing, and only when the user has not: a value in the environment
always wins. benchmarks/bench_threads.py measures the settings against each other.
"""

from __future__ import annotations

import os
import sys

SPIN_VAR = "OPENBLAS_THREAD_TIMEOUT"
SPIN_DEFAULT = "20"  # 2**20 cycles, ~0.4 ms: back-to-back products still find the workers awake


def bound_blas_spin(env=None) -> bool:
    """Set OPENBLAS_THREAD_TIMEOUT to SPIN_DEFAULT in `env` (this process's environment when
    None, before NumPy is imported) unless it is set already. Returns whether it was set."""
    if env is None:
        if "numpy" in sys.modules:  # too late: OpenBLAS has read its settings
            return False
        env = os.environ
    if SPIN_VAR in env:
        return False
    env[SPIN_VAR] = SPIN_DEFAULT
    return True
