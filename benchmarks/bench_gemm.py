"""The matrix products of a GPT step on each BLAS at hand: NumPy's OpenBLAS, MKL (autograd.blas,
when `pip install mkl` put it in this environment) and PyTorch's (when installed).

    python benchmarks/bench_gemm.py [--config S M] [--rounds 3] [--threads 2]

Each library runs in a fresh process of its own, the libraries alternating for --rounds rounds
(one library's idle BLAS threads would otherwise slow the next). Each process times, for every
product of the config's forward and backward (x W, g W^T and x^T g of the attention and MLP
layers at 2048 rows), the median of 30 calls after 5 warm-up calls, single precision. The JSON
gives each library's median round per shape in milliseconds, GFLOP/s over all shapes and the
ratio to OpenBLAS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROWS = 2048
WIDTHS = {"S": 128, "M": 384}  # n_embd of tinyllm's S and M configs


def shapes(width):
    """(m, k, n) of the products one block makes: qkv (d -> 3d), attention output (d -> d), MLP
    up (d -> 4d) and down (4d -> d), each forward (x W), input gradient (g W^T) and weight
    gradient (x^T g)."""
    out = []
    for d_in, d_out in ((width, 3 * width), (width, width), (width, 4 * width), (4 * width, width)):
        out += [(ROWS, d_in, d_out), (ROWS, d_out, d_in), (d_in, ROWS, d_out)]
    return out


def worker(library, width):
    import numpy as np

    rng = np.random.default_rng(0)
    if library == "torch":
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

        def product(a, b):
            return torch.mm(a, b)
        convert = torch.from_numpy
    else:
        from autograd import blas

        if blas.using_mkl() != (library == "mkl"):
            sys.exit(f"autograd.blas did not pick {library}")
        product, convert = blas.matmul, (lambda a: a)
    times = {}
    for m, k, n in shapes(width):
        a = convert(rng.standard_normal((m, k), dtype=np.float32))
        b = convert(rng.standard_normal((k, n), dtype=np.float32))
        for _ in range(5):
            product(a, b)
        runs = []
        for _ in range(30):
            start = time.perf_counter()
            product(a, b)
            runs.append(time.perf_counter() - start)
        times[f"{m}x{k}x{n}"] = 1e3 * statistics.median(runs)
    print(json.dumps(times))


def mkl_installed():
    code = "from autograd import blas; print(any(p.exists() for p in blas._candidates()))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, AUTOGRAD_BLAS="numpy")).stdout.strip() == "True"


def torch_installed():
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", choices=sorted(WIDTHS), default=["S", "M"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", choices=["openblas", "mkl", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.width)

    libraries = ["openblas"] + ["mkl"] * mkl_installed() + ["torch"] * torch_installed()
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    result = {"benchmark": "gemm", "threads": args.threads, "rows": ROWS,
              "method": f"each library in its own process, {args.rounds} alternating rounds; "
                        "median of 30 calls per shape, median round"}
    for config in args.config:
        rounds = {lib: [] for lib in libraries}
        for _ in range(args.rounds):
            for lib in libraries:
                env["AUTOGRAD_BLAS"] = "mkl" if lib == "mkl" else "numpy"
                out = subprocess.run([sys.executable, __file__, "--worker", lib,
                                      "--width", str(WIDTHS[config])],
                                     capture_output=True, text=True, env=env, check=True)
                rounds[lib].append(json.loads(out.stdout))
        flops = {f"{m}x{k}x{n}": 2 * m * k * n for m, k, n in shapes(WIDTHS[config])}
        report = {}
        for lib, runs in rounds.items():
            ms = {shape: round(statistics.median(r[shape] for r in runs), 3) for shape in flops}
            report[lib] = {"total_ms": round(sum(ms.values()), 2),
                           "gflops": round(sum(flops.values()) / sum(ms.values()) / 1e6, 1),
                           "ms": ms}
        for lib in libraries[1:]:
            report[lib]["speedup_over_openblas"] = round(
                report["openblas"]["total_ms"] / report[lib]["total_ms"], 3)
        result[config] = report
    print(json.dumps(result))


if __name__ == "__main__":
    main()
