"""`import autograd` keeps freed array memory in the process (autograd/memory.py): a loop that
allocates and frees arrays of a few megabytes, as a training step does, takes no page faults
after its first round; with AUTOGRAD_KEEP_FREED_MEMORY=0 glibc gives the memory back each time."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import resource
import numpy as np
import autograd

def faults_per_round(rounds=10):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        arrays = [np.ones(1 << 20, dtype=np.float32) for _ in range(8)]  # 8 x 4 MB
        del arrays
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / rounds

faults_per_round(2)
print(autograd.memory.keep_freed_memory(), faults_per_round())
"""


def _probe(setting):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUTOGRAD_KEEP_FREED_MEMORY": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                         check=True)
    applied, faults = out.stdout.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_arrays_are_reused_without_page_faults():
    applied, faults = _probe("1")
    if not applied:
        pytest.skip("this C library has no mallopt (not glibc)")
    # 32 MB freshly mapped each round would be ~8,000 faults of 4 KB pages.
    assert faults < 100
    applied, faults = _probe("0")
    assert not applied and faults > 4000  # the probe does measure what it claims to
