"""Peak memory of one fine-tuning step: full fine-tuning against LoRA, on the `small` model.

Each variant runs in a process of its own (so one's freed memory cannot hide the other's) and
measures, with tracemalloc (NumPy reports its arrays to it), the peak Python/NumPy allocation
over a few training steps (forward, backward, AdamW update) beyond the model itself: the
activations, the gradients and the optimizer's two moment buffers. Full fine-tuning keeps a
gradient and two moments for every weight; LoRA only for the adapters.

    python benchmarks/bench_lora_memory.py            # prints one JSON line per variant
    python benchmarks/bench_lora_memory.py --rank 8 --batch-size 16 --block 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc


def measure(mode, rank, batch_size, block, steps=3):
    import numpy as np

    from autograd import optim
    from tinyllm.align import lora
    from tinyllm.model import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=2052, block_size=block, n_layer=4, n_head=4, n_embd=128)
    model = GPT(cfg, seed=0)
    report = lora.parameter_report(model, [])
    if mode == "lora":
        report = lora.apply_lora(model, lora.LoRAConfig(rank=rank, alpha=2 * rank))
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg.vocab_size, (batch_size, block))
    y = rng.integers(0, cfg.vocab_size, (batch_size, block))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    opt = optim.AdamW(lora.trainable_parameters(model), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = model(x, y)[1]
        loss.backward()
        opt.step()
        opt.zero_grad()
    seconds = (time.perf_counter() - t0) / steps
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"mode": mode, "rank": rank if mode == "lora" else None, "batch_size": batch_size,
            "block": block, "trainable_parameters": report["trainable_parameters"],
            "total_parameters": report["total_parameters"],
            "trainable_fraction": round(report["trainable_fraction"], 4),
            "peak_step_mib": round(peak / 2**20, 1), "seconds_per_step": round(seconds, 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--one", choices=["full", "lora"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(a.one, a.rank, a.batch_size, a.block)))
        return
    for mode in ("full", "lora"):
        out = subprocess.run([sys.executable, __file__, "--one", mode, "--rank", str(a.rank),
                              "--batch-size", str(a.batch_size), "--block", str(a.block)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
