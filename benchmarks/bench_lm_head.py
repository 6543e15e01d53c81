"""The fused LM head + cross-entropy against linear-then-cross_entropy, on the GPT of bench_train.

    python benchmarks/bench_lm_head.py --config M [--rounds 7] [--steps 3]

Prints one JSON line with, for each head ("composed": the (B, T, V) logits materialised;
"fused": autograd/ops/lm_head.py, a chunk of rows at a time):
- peak_mb: the peak of NumPy's allocations (tracemalloc) during one forward + backward, above
  what was allocated before it. Deterministic, so it does not depend on the machine's load.
- step_ms / cpu_ms: wall-clock and process CPU time of forward + backward, the median over
  --rounds rounds in which the two heads alternate (so both see the same machine state); each
  round's value is the median of --steps steps. The load average is printed with them: on a
  loaded machine, trust the CPU time (with one BLAS thread) more than the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import CONFIGS  # noqa: E402

HEADS = ("composed", "fused")


def main():
    parser = argparse.ArgumentParser(description="fused LM head + cross-entropy: memory and time")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="M")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per head per round")
    args = parser.parse_args()

    from tinyllm.model import GPT, GPTConfig

    cfg = CONFIGS[args.config]
    model = GPT(GPTConfig(**{k: v for k, v in cfg.items() if k != "batch_size"}))
    rng = np.random.default_rng(0)
    shape = (cfg["batch_size"], cfg["block_size"])
    x, y = rng.integers(0, cfg["vocab_size"], shape), rng.integers(0, cfg["vocab_size"], shape)

    def step(head):
        loss = model(x, y, return_logits=head == "composed")[1]
        loss.backward()
        model.zero_grad()
        return loss.item()

    losses = {head: step(head) for head in HEADS}  # also the warm-up
    peaks = {}
    for head in HEADS:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        step(head)
        peaks[head] = (tracemalloc.get_traced_memory()[1] - before) / 2**20
        tracemalloc.stop()

    wall = {head: [] for head in HEADS}
    cpu = {head: [] for head in HEADS}
    loads = []
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for head in HEADS if r % 2 == 0 else HEADS[::-1]:
            w, c = [], []
            for _ in range(args.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                step(head)
                w.append(time.perf_counter() - t0)
                c.append(time.process_time() - c0)
            wall[head].append(statistics.median(w))
            cpu[head].append(statistics.median(c))

    result = {"benchmark": "lm_head", "config": args.config,
              "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
              "method": f"{args.rounds} alternating rounds of {args.steps} forward+backward "
                        "steps per head; median round",
              "load_average_1min": [round(v, 1) for v in loads]}
    for head in HEADS:
        result[head] = {"loss": round(losses[head], 6), "peak_mb": round(peaks[head], 1),
                        "step_ms": round(statistics.median(wall[head]) * 1e3, 1),
                        "cpu_ms": round(statistics.median(cpu[head]) * 1e3, 1)}
    result["peak_ratio_fused_vs_composed"] = round(peaks["fused"] / peaks["composed"], 3)
    result["cpu_ratio_fused_vs_composed"] = round(
        result["fused"]["cpu_ms"] / result["composed"]["cpu_ms"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
