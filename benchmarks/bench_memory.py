"""Memory over a long training run: is the resident set size flat?

    python benchmarks/bench_memory.py                 # 1,000 steps of the tiny preset
    python benchmarks/bench_memory.py --steps 3000 --every 100

Trains the tiny preset on the built-in corpus in this process, with evaluations and
checkpoints as usual, and samples the RSS (from /proc/self/statm, or ru_maxrss elsewhere)
every `--every` steps. Prints JSON: the samples, the RSS after warm-up (the first sample after
the first evaluation) and at the end, and the least-squares slope over the second half of the
run in KiB per 1,000 steps. A leak of even one small array per step shows as a steady slope;
a flat run stays within allocator noise (a few hundred KiB).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyllm.train import PRESETS, TrainConfig, Trainer  # noqa: E402


def rss_kib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # a peak: an upper bound


def measure(steps=1000, every=50, eval_interval=250, data="builtin:pydoc", workdir=None):
    model, train = PRESETS["tiny"]
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        cfg = TrainConfig(**{**train, "max_steps": steps, "eval_interval": eval_interval,
                             "out_dir": str(Path(workdir or tmp) / "run"), "data": data,
                             "progress": False}, model=dict(model))
        trainer = Trainer(cfg, log=lambda m: None)
        samples = []
        real_step = trainer.train_step

        def step():
            loss = real_step()
            if trainer.step % every == 0:
                samples.append((trainer.step, rss_kib()))
            return loss

        trainer.train_step = step
        trainer.run()
    x = np.array([s for s, _ in samples], dtype=float)
    y = np.array([r for _, r in samples])
    half = x >= x[-1] / 2
    slope = float(np.polyfit(x[half], y[half], 1)[0]) * 1000 if half.sum() >= 2 else None
    warm = next((r for s, r in samples if s > eval_interval), samples[0][1])
    return {"steps": steps, "every": every, "rss_kib": [[int(s), round(r)] for s, r in samples],
            "rss_after_warmup_mib": round(warm / 1024, 1),
            "rss_at_end_mib": round(samples[-1][1] / 1024, 1),
            "growth_after_warmup_mib": round((samples[-1][1] - warm) / 1024, 2),
            "slope_second_half_kib_per_1000_steps": None if slope is None else round(slope, 1),
            "peak_mib": round(max(y) / 1024, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--eval-interval", type=int, default=250)
    parser.add_argument("--data", default="builtin:pydoc")
    args = parser.parse_args()
    print(json.dumps(measure(args.steps, args.every, args.eval_interval, args.data), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
