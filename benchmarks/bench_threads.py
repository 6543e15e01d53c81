"""What OpenBLAS's idle spinning costs, and what bounding it with OPENBLAS_THREAD_TIMEOUT does.

    python benchmarks/bench_threads.py [--timeouts 28 4] [--rounds 5] [--config S]

After a BLAS call, OpenBLAS's worker threads busy-wait for about 2**OPENBLAS_THREAD_TIMEOUT CPU
cycles (default 28: ~0.1 s at 2.5 GHz) before they sleep, so between two matrix products they
rarely sleep and keep the other cores busy. The variable is read once, when the library loads
(NumPy's import), and only values 4..30 count; threadpoolctl can change the number of BLAS
threads at run time but not this wait. Each setting runs in a fresh process, the settings
alternating for --rounds rounds (so each sees the same machine state); medians are printed,
with the load average. Measured in each process:
- matmul_gflops: a 1024 x 1024 float32 product, best of 5 (does BLAS itself lose speed?)
- small_matmul_us: a (2048, 128) @ (128, 384) product, as at config S, median of 50
- chain_ms_1 / chain_ms_2: a GELU-like chain of ufuncs over 3M float32 in 64k-element blocks,
  right after a matrix product, on one thread / on two threads of a pool (ufuncs release the GIL)
- step_ms / step_cpu_ms: wall and process CPU time of a training step of our GPT (--config),
  median; CPU time above wall time is the BLAS workers' (spinning included)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BLOCK = 1 << 16


def _gelu_chain(x, out, lo, hi):
    import numpy as np

    for i in range(lo, hi, BLOCK):
        a, o = x[i:i + BLOCK], out[i:i + BLOCK]
        np.multiply(a, a, out=o)
        o *= a
        o *= 0.044715
        o += a
        o *= 0.7978845608
        np.tanh(o, out=o)
        o += 1.0
        o *= a
        o *= 0.5


def worker(args):
    import numpy as np
    from bench_train import CONFIGS, ours

    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    a @ a
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    small_x = rng.standard_normal((2048, 128), dtype=np.float32)
    small_w = rng.standard_normal((128, 384), dtype=np.float32)
    small = []
    for _ in range(50):
        t0 = time.perf_counter()
        small_x @ small_w
        small.append(time.perf_counter() - t0)

    from concurrent.futures import ThreadPoolExecutor

    x = rng.standard_normal(3 << 20, dtype=np.float32)
    out = np.empty_like(x)
    pool = ThreadPoolExecutor(2)
    half = (x.size // 2) // BLOCK * BLOCK
    chain = {1: [], 2: []}
    for _ in range(7):
        for n in (1, 2):
            a @ a  # the workers are now spinning, as after any matrix product of a step
            t0 = time.perf_counter()
            if n == 1:
                _gelu_chain(x, out, 0, x.size)
            else:
                futures = [pool.submit(_gelu_chain, x, out, 0, half),
                           pool.submit(_gelu_chain, x, out, half, x.size)]
                for f in futures:
                    f.result()
            chain[n].append(time.perf_counter() - t0)

    step = ours(CONFIGS[args.config], "cpu")[0]
    for _ in range(2):
        step()
    wall, cpu = [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median
    print(json.dumps({"matmul_gflops": 2 * 1024**3 / best / 1e9,
                      "small_matmul_us": med(small) * 1e6,
                      "chain_ms_1": med(chain[1]) * 1e3, "chain_ms_2": med(chain[2]) * 1e3,
                      "step_ms": med(wall) * 1e3, "step_cpu_ms": med(cpu) * 1e3}))


def run(args, timeout):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    env.pop("OPENBLAS_THREAD_TIMEOUT", None)
    if timeout != "unset":
        env["OPENBLAS_THREAD_TIMEOUT"] = timeout
    cmd = [sys.executable, __file__, "--worker", "--config", args.config, "--steps", str(args.steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"the worker with OPENBLAS_THREAD_TIMEOUT={timeout} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description="OpenBLAS thread spin: cost and the timeout")
    parser.add_argument("--timeouts", nargs="+", default=["unset", "4"],
                        help="OPENBLAS_THREAD_TIMEOUT values to compare ('unset': the default)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--config", default="S")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    results = {t: [] for t in args.timeouts}
    loads = []
    for r in range(args.rounds):
        loads.append(round(os.getloadavg()[0], 1))
        for t in args.timeouts if r % 2 == 0 else args.timeouts[::-1]:
            results[t].append(run(args, t))
    summary = {"benchmark": "threads", "config": args.config, "threads": args.threads,
               "method": f"a fresh process per setting, {args.rounds} alternating rounds; median",
               "load_average_1min": loads}
    for t, rounds in results.items():
        summary[f"timeout={t}"] = {k: round(statistics.median(r[k] for r in rounds), 2)
                                   for k in rounds[0]}
        summary[f"timeout={t}"]["step_ms_rounds"] = [round(r["step_ms"], 1) for r in rounds]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
