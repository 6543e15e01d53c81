"""Data-parallel training speed: 1 rank x 2 BLAS threads against 2 MPI ranks x 1 thread.

    python benchmarks/bench_distributed.py                # sizes S and M (DESIGN.md)
    python benchmarks/bench_distributed.py --sizes S --steps 6

For each size it times full training steps (forward, backward, gradient all-reduce, clip,
AdamW) on random tokens with the same global batch: one process with 2 BLAS threads, then
`mpiexec -n 2` with 1 thread per rank, the reduction overlapped with backward and not, and
with ZeRO-1 (`--zero 1`: reduce-scatter, sharded AdamW, all-gather; its AdamW state per rank is
reported beside the unsharded one). It also times the all-reduce of the whole gradient buffer
alone, which gives the measured bandwidth.

From those it projects (weak scaling: each rank keeps its batch, the ring all-reduce moves
2(N-1)/N of the gradient bytes through each link) the step time and efficiency of 8 and 64 CPU
nodes on a 10 Gbit/s network and the all-reduce time of 8 GPUs on NVLink. Prints one JSON line.
Needs mpi4py and mpiexec (pip install ".[mpi]").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {  # DESIGN.md's named sizes
    "S": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=512, batch=16),
    "M": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=4096, batch=8),
}
LINKS = {"10 Gbit/s Ethernet": 10e9 / 8, "NVLink (H100, ~450 GB/s per direction)": 450e9}
LATENCY = {"10 Gbit/s Ethernet": 20e-6, "NVLink (H100, ~450 GB/s per direction)": 2e-6}


def worker(plan):
    """One rank's timing (run under mpiexec, or alone with --distributed off)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from autograd import optim
    from tinyllm.data.dataset import BatchLoader
    from tinyllm.distributed import GradientReducer, ShardedLoader, connect
    from tinyllm.distributed.zero import ShardedAdamW, ShardedGradients
    from tinyllm.model import GPT, GPTConfig
    from tinyllm.train import param_groups

    comm = connect(plan["distributed"])
    size = dict(SIZES[plan["size"]])
    batch = size.pop("batch")
    model = GPT(GPTConfig(**size, dropout=0.0), seed=0)
    tokens = np.random.default_rng(0).integers(0, size["vocab_size"], 200_000).astype(np.uint16)
    loader = ShardedLoader(BatchLoader(tokens, batch, size["block_size"], seed=0),
                           comm.rank, comm.size)
    if plan.get("zero"):
        reducer = ShardedGradients(model.parameters(), comm, loader.weight)
        opt = ShardedAdamW(param_groups(model, 0.1), reducer, comm, lr=1e-4)
    else:
        reducer = GradientReducer(model.parameters(), comm, loader.weight, overlap=plan["overlap"])
        opt = optim.AdamW(param_groups(model, 0.1), lr=1e-4)
    times, comm_times = [], []
    for step in range(plan["warmup"] + plan["steps"]):
        if comm.size > 1:
            comm.barrier()
        t0 = time.perf_counter()
        reducer.before_backward(step, 0, 1)
        x, y = loader.next_batch()
        loss = model(x, y)[1]
        loss.backward()
        reducer.reduce(float(loss.data))
        reducer.clip_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step >= plan["warmup"]:
            times.append(time.perf_counter() - t0)
            comm_times.append(reducer.comm_seconds)
    # The all-reduce alone: the whole gradient buffer, a few times.
    alone = []
    for _ in range(5):
        if comm.size > 1:
            comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_(reducer.buffer)
        alone.append(time.perf_counter() - t0)
    moments = getattr(opt, "shard", opt).state.values()  # ZeRO-1: this rank's shard only
    state_bytes = sum(v.nbytes for s in moments for v in s.values() if hasattr(v, "nbytes"))
    if comm.rank == 0:
        print(json.dumps({"step_s": float(np.median(times)), "adamw_state_bytes": state_bytes,
                          "comm_s": float(np.median(comm_times)),
                          "allreduce_alone_s": float(np.median(alone)),
                          "grad_bytes": int(reducer.buffer.nbytes),
                          "buckets": len(reducer.buckets), "tokens_per_step":
                          batch * size["block_size"], "ranks": comm.size}), flush=True)


def run(size, ranks, threads, overlap, steps, warmup, zero=0):
    plan = {"size": size, "overlap": overlap, "steps": steps, "warmup": warmup, "zero": zero,
            "distributed": "mpi" if ranks > 1 else "off"}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tinyllm.blas_spin import bound_blas_spin

    bound_blas_spin(env)  # as the `tinyllm` command runs (and so the element-wise pool is on)
    cmd = [sys.executable, __file__, "--worker", json.dumps(plan)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ring_allreduce_s(nbytes, n, bandwidth, latency):
    """Ring all-reduce: 2(N-1) steps, each moving nbytes/N over every link at once."""
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def project(one_rank_compute_s, nbytes, tokens_per_rank):
    out = {}
    for link, bw in LINKS.items():
        for n in ((8, 64) if "Ethernet" in link else (8,)):
            comm = ring_allreduce_s(nbytes, n, bw, LATENCY[link])
            row = {"allreduce_ms": round(comm * 1e3, 3)}
            if "Ethernet" in link:  # CPU nodes of this machine's per-rank speed
                row.update({
                    "step_s_no_overlap": round(one_rank_compute_s + comm, 4),
                    "efficiency_no_overlap": round(one_rank_compute_s / (one_rank_compute_s + comm), 3),
                    "efficiency_full_overlap": round(min(1.0, one_rank_compute_s / comm), 3),
                    "tokens_per_s": round(n * tokens_per_rank / (one_rank_compute_s + comm))})
            out[f"{n} x {link}"] = row
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["S", "M"], choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default S 8, M 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    result = {"machine": f"{os.cpu_count()} cores",
              "load_average_at_start": os.getloadavg()[0], "sizes": {}}
    for size in args.sizes:
        steps = args.steps or (8 if size == "S" else 3)
        warmup = 2 if size == "S" else 1
        one = run(size, 1, 2, False, steps, warmup)
        two = run(size, 2, 1, True, steps, warmup)
        two_plain = run(size, 2, 1, False, steps, warmup)
        two_zero = run(size, 2, 1, False, steps, warmup, zero=1)
        bandwidth = 2 * (2 - 1) / 2 * two["grad_bytes"] / two["allreduce_alone_s"]
        compute = two_plain["step_s"] - two_plain["comm_s"]  # one rank's work, 1 thread
        result["sizes"][size] = {
            "parameters": two["grad_bytes"] // 4,
            "1 rank x 2 threads tokens/s": round(one["tokens_per_step"] / one["step_s"]),
            "2 ranks x 1 thread tokens/s": round(two["tokens_per_step"] / two["step_s"]),
            "2 ranks, no overlap tokens/s": round(two_plain["tokens_per_step"]
                                                  / two_plain["step_s"]),
            "2 ranks, ZeRO-1 tokens/s": round(two_zero["tokens_per_step"] / two_zero["step_s"]),
            "adamw_state_MB_per_rank": round(two_plain["adamw_state_bytes"] / 1e6, 2),
            "adamw_state_MB_per_rank_zero1": round(two_zero["adamw_state_bytes"] / 1e6, 2),
            "allreduce_ms_per_step": round(two_plain["comm_s"] * 1e3, 2),
            "allreduce_share_of_step": round(two_plain["comm_s"] / two_plain["step_s"], 3),
            "overlap_saves_ms_per_step": round((two_plain["step_s"] - two["step_s"]) * 1e3, 1),
            "allreduce_alone_ms": round(two["allreduce_alone_s"] * 1e3, 2),
            "measured_bus_bandwidth_GB_s": round(bandwidth / 1e9, 2),
            "buckets": two["buckets"],
            "projection_weak_scaling": project(compute, two["grad_bytes"],
                                               two["tokens_per_step"] // 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
