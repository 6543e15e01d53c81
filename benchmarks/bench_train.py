"""Training speed and memory of the GPT, optionally against the same model in PyTorch.

    python benchmarks/bench_train.py --config S|M|small [--device cpu|cuda] [--compare torch] [--steps 10]

Prints one JSON line: tokens/s (median step after warm-up), the forward / backward / optimizer
split, peak memory (RSS of a separate process running only that framework, on the CPU; the
CuPy pool's peak on the GPU), model FLOPs per token (6N + 12 L T d), and the fraction of the
matrix-product peak (a large float32 matmul measured in the same run) that the step achieves.
With --compare torch (and PyTorch installed) each framework runs in a process of its own, the
processes alternating for --rounds rounds, each pinned to the same thread count (OMP, OpenBLAS,
MKL and torch.set_num_threads); the median round of each is reported, with the ratio, and
each round's ratio of the two processes run back to back (round_ratios_vs_torch). One
process for both would be unfair: after each BLAS call OpenBLAS's workers keep spinning on the
other cores, and the other library's threads then fight them for those cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

CONFIGS = {
    "S": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=512, batch_size=16),
    "M": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=4096, batch_size=8),
}


def _default_preset():
    """The default `tinyllm train` (preset "small"): S with a 2048-token vocabulary and dropout."""
    from tinyllm.train_config import PRESETS

    model, train = PRESETS["small"]
    return dict(model, batch_size=train["batch_size"])


CONFIGS["small"] = _default_preset()


def _sync(device):
    if device == "cuda":
        from autograd.backend import _cupy

        _cupy().cuda.Device().synchronize()


def ours(cfg, device, dtype="float32", head="fused", shards=None):
    """A step function for tinyllm's GPT: returns (forward, backward, optimizer) seconds.
    head="fused": the output layer and loss as one op that never holds the (B, T, V) logits
    (what training uses); "composed": linear, then cross_entropy (the logits materialised).
    shards: threads that share each batch (autograd.nn.shards; None: as `tinyllm train`
    decides). With more than one, forward and backward run together on each thread, so the
    step returns (forward + backward, None, optimizer)."""
    import autograd as ag
    from autograd.nn.shards import ThreadShards
    from tinyllm.model import GPT, GPTConfig
    from tinyllm.train import TrainConfig, param_groups

    if device == "cuda":
        ag.set_default_device("cuda")
    model_cfg = {k: v for k, v in cfg.items() if k != "batch_size"}
    model = GPT(GPTConfig(**model_cfg, dtype=dtype))
    opt = ag.optim.AdamW(param_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    shape = (cfg["batch_size"], cfg["block_size"])
    batches = [(rng.integers(0, cfg["vocab_size"], shape), rng.integers(0, cfg["vocab_size"], shape))
               for _ in range(4)]
    state = {"i": 0}
    if shards is None:
        shards = TrainConfig(batch_size=cfg["batch_size"], device=device).thread_shards()
    split = ThreadShards(model, shards, rng=model.rng) if shards > 1 else None

    def step():
        x, y = batches[state["i"] % 4]
        state["i"] += 1
        t0 = time.perf_counter()
        if split is not None:  # each part's loss weighted by its rows: they add up to the mean
            parts = [(xs, ys, len(xs) / len(x)) for xs, ys in
                     zip(np.array_split(x, shards), np.array_split(y, shards))]
            split.run(lambda m, p: m(p[0], p[1], return_logits=head == "composed")[1] * p[2],
                      parts)
            _sync(device)
            t1 = time.perf_counter()
            ag.optim.clip_grad_norm(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            return t1 - t0, None, time.perf_counter() - t1
        loss = model(x, y, return_logits=head == "composed")[1]
        _sync(device)
        t1 = time.perf_counter()
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        ag.optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        _sync(device)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    step.shards = shards
    return step, model.estimate_flops_per_token(), model.num_parameters()


def theirs(cfg, device):
    """The same step in PyTorch eager."""
    import torch
    from torch_gpt import TorchGPT

    dev = "cuda" if device == "cuda" else "cpu"
    torch.manual_seed(0)
    model_cfg = {k: v for k, v in cfg.items() if k != "batch_size"}
    model = TorchGPT(**model_cfg).to(dev)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=3e-4,
                            betas=(0.9, 0.95), foreach=True)
    g = torch.Generator().manual_seed(0)
    shape = (cfg["batch_size"], cfg["block_size"])
    batches = [(torch.randint(0, cfg["vocab_size"], shape, generator=g).to(dev),
                torch.randint(0, cfg["vocab_size"], shape, generator=g).to(dev)) for _ in range(4)]
    state = {"i": 0}

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    def step():
        x, y = batches[state["i"] % 4]
        state["i"] += 1
        t0 = time.perf_counter()
        loss = model(x, y)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    return step


def matmul_peak(device, n=2048):
    """FLOP/s of a large float32 matrix product: the ceiling a training step can approach."""
    if device == "cuda":
        from autograd.backend import _cupy

        xp = _cupy()
    else:
        xp = np
    a = xp.asarray(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
    b = a.copy()
    a @ b
    _sync(device)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def summarize(times, tokens_per_step):
    """Median step and its parts (forward and backward as one where the steps ran them
    together on several threads: their backward time is None)."""
    total = [sum(x for x in t if x is not None) for t in times]
    med = statistics.median(total)
    split = [statistics.median(t[i] for t in times) if times[0][i] is not None else None
             for i in range(3)]
    names = ("forward_ms", "backward_ms") if split[1] is not None else ("forward_backward_ms",)
    parts = dict(zip(names, split))
    return {"tokens_per_s": round(tokens_per_step / med, 1), "step_ms": round(med * 1e3, 2),
            **{k: round(v * 1e3, 2) for k, v in parts.items()},
            "optimizer_ms": round(split[2] * 1e3, 2)}


def peak_rss_mb():
    """This process's peak resident memory. VmHWM belongs to the process's own address space;
    ru_maxrss would carry over the parent's peak across fork + exec on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args):
    """One framework alone in this process: warm up, time each step, report the peak memory."""
    cfg = CONFIGS[args.config]
    if args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
        step = theirs(cfg, args.device)
    else:
        step = ours(cfg, args.device, args.dtype, args.head, args.shards)[0]
    for _ in range(args.warmup):
        step()
    times = [step() for _ in range(args.steps)]
    if args.device == "cuda" and args.worker == "ours":
        from autograd.backend import _cupy

        peak = _cupy().get_default_memory_pool().total_bytes() / 2**20
    elif args.device == "cuda":
        import torch

        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mb()
    report = {"times": times, "peak_mb": round(peak, 1)}
    if args.worker == "ours":
        from autograd import blas

        report["blas"], report["shards"] = blas.library(), step.shards
    print(json.dumps(report))


def run_worker(args, framework):
    """Start a fresh process for one framework, its BLAS and OpenMP pools pinned to --threads.
    "ours_numpy_blas" is ours with AUTOGRAD_BLAS=numpy: NumPy's OpenBLAS even where MKL is;
    "ours_mkl" with AUTOGRAD_BLAS=mkl: MKL on any CPU (by default it is used on Intel's only);
    "ours_one_shard" is ours with each batch on one thread (--shards 1)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    shards = [] if args.shards is None else ["--shards", str(args.shards)]
    if framework in ("ours_numpy_blas", "ours_mkl"):
        env["AUTOGRAD_BLAS"] = "numpy" if framework == "ours_numpy_blas" else "mkl"
        framework = "ours"
    if framework == "ours_one_shard":
        shards, framework = ["--shards", "1"], "ours"
    if framework == "ours":  # as the tinyllm command runs it (a value you set is kept)
        from tinyllm.blas_spin import bound_blas_spin

        bound_blas_spin(env)
    cmd = [sys.executable, __file__, "--config", args.config, "--device", args.device,
           "--dtype", args.dtype, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--head", args.head, "--worker", framework, *shards]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"the {framework} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description="GPT training speed and memory")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="S")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compare", choices=["torch"], default=None)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="processes per framework, alternating; the median round is reported")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--head", choices=["fused", "composed"], default="fused",
                        help="our output layer + loss: fused (never holds the logits, as training "
                             "does) or composed (linear, then cross_entropy)")
    parser.add_argument("--numpy-blas-too", action="store_true",
                        help="also time ours on NumPy's own BLAS (AUTOGRAD_BLAS=numpy), in the "
                             "same alternation: what the mkl extra adds")
    parser.add_argument("--mkl-too", action="store_true",
                        help="also time ours on MKL (AUTOGRAD_BLAS=mkl) on any CPU, in the same "
                             "alternation: what it would give where it is not the default")
    parser.add_argument("--shards", type=int, default=None,
                        help="threads that share each batch (autograd.nn.shards); default: as "
                             "`tinyllm train` decides (2 on 2 or more threads)")
    parser.add_argument("--one-shard-too", action="store_true",
                        help="also time ours with each batch on one thread (--shards 1), in the "
                             "same alternation: what the batch shards add")
    parser.add_argument("--worker", choices=["ours", "torch"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    frameworks = (["ours"] + ["ours_numpy_blas"] * args.numpy_blas_too + ["ours_mkl"] * args.mkl_too
                  + ["ours_one_shard"] * args.one_shard_too)
    if args.compare == "torch":
        try:
            import torch  # noqa: F401  (only to know it is there; the worker imports it)
        except ImportError:
            print("PyTorch is not installed: pip install torch==2.13.0", file=sys.stderr)
        else:
            frameworks.append("torch")
    cfg = CONFIGS[args.config]
    tokens_per_step = cfg["batch_size"] * cfg["block_size"]
    rounds = {name: [] for name in frameworks}
    for r in range(args.rounds):
        # Alternate processes, so both see the same machine state; every other round in the
        # reverse order, so neither framework always runs right after the other.
        for name in (frameworks if r % 2 == 0 else frameworks[::-1]):
            rounds[name].append(run_worker(args, name))
    from tinyllm.model import GPT, GPTConfig

    model = GPT(GPTConfig(**{k: v for k, v in cfg.items() if k != "batch_size"}))
    flops_per_token, n_params = model.estimate_flops_per_token(), model.num_parameters()
    peak = matmul_peak(args.device)
    result = {"benchmark": "train", "config": args.config, "device": args.device,
              "dtype": args.dtype, "threads": args.threads, "head": args.head,
              "parameters": n_params,
              "method": f"each framework in its own process, {args.rounds} alternating rounds of "
                        f"{args.steps} steps after {args.warmup} warm-up, every other round in reverse "
                        f"order; median round",
              "flops_per_token": flops_per_token, "matmul_peak_gflops": round(peak / 1e9, 1)}
    for name in frameworks:
        per_round = [summarize(r["times"], tokens_per_step) for r in rounds[name]]
        s = sorted(per_round, key=lambda r: r["tokens_per_s"])[len(per_round) // 2]
        s["tokens_per_s_rounds"] = [r["tokens_per_s"] for r in per_round]
        s["fraction_of_matmul_peak"] = round(s["tokens_per_s"] * flops_per_token / peak, 3)
        s["peak_memory_mb"] = max(r["peak_mb"] for r in rounds[name])
        if "blas" in rounds[name][0]:
            s["blas"] = rounds[name][0]["blas"]  # our matrix products: MKL, or NumPy's BLAS
            s["shards"] = rounds[name][0]["shards"]
        result[name] = s
    if "torch" in result:
        for name in frameworks[:-1]:
            suffix = name.removeprefix("ours")
            result["speed_ratio_vs_torch" + suffix] = round(
                result[name]["tokens_per_s"] / result["torch"]["tokens_per_s"], 3)
            # Each round's ratio of two processes run back to back: a machine whose speed drifts
            # over minutes moves both alike, so these scatter less than the medians' ratio.
            paired = [a / b for a, b in zip(result[name]["tokens_per_s_rounds"],
                                            result["torch"]["tokens_per_s_rounds"])]
            result["round_ratios_vs_torch" + suffix] = [round(x, 3) for x in paired]
        result["memory_ratio_vs_torch"] = round(
            result["ours"]["peak_memory_mb"] / result["torch"]["peak_memory_mb"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
