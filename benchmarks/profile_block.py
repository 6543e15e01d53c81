"""Where the time of one transformer block goes: forward and backward, split by op.

    python benchmarks/profile_block.py [--iters 10] [--warmup 3] [--threads N] [--compare torch]
    python benchmarks/profile_block.py --step S --compare torch     # a whole training step

One GPT-2 block (ln_1, attention (c_attn, the fused q/k/v attention, c_proj), residual, ln_2,
MLP (c_fc, GELU, c_proj), residual) at the size of config M: batch 8, time 256, width 384, 6
heads, float32. Each framework runs in a process of its own (ours first), pinned to --threads,
so neither one's idle threads spin against the other. With --step S|M, the whole training step
of that bench_train.py config instead (forward, backward, clipping and AdamW, by op; its
optimizer_ms apart). Prints one JSON line:

    forward_ms, backward_ms    median time of the block's forward and of its backward, measured
                               with no instrumentation at all
    profiled                   the same (means), measured while every op is timed, and the part of it
                               that no op accounts for: the engine's own overhead (Tensor and
                               Node creation, the topological sort, gradient bookkeeping,
                               unbroadcast checks, module calls)
    ops                        {op: {forward_ms, backward_ms, calls, backward_calls}} per
                               iteration, slowest (forward + backward) first
    torch                      (with --compare torch) the same block in PyTorch eager, with the
                               same weights, input, upstream gradient and thread count: its
                               clean timings and PyTorch's own profile (torch.profiler, self
                               CPU ms per iteration of each aten op), and the ratio ours / torch

How ops are timed: for the duration of the profiled run, the `forward` and `backward` static
methods of every registered `Function` subclass are replaced by wrappers that read
`time.perf_counter()` just before and just after calling the original. That times exactly the
op's own array work, nothing around it. (The op hooks of autograd.function run *after* each
call, so with hooks alone an op would also be charged the Python work since the previous op.)
If an op's forward calls another op's forward directly, the inner time is charged to the inner
op only (exclusive times), so nothing is counted twice. The wrappers are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

SHAPE = dict(batch=8, time=256, width=384, heads=6)


class OpTimer:
    """Times every op's forward and backward by wrapping the methods of each registered
    Function subclass; use as a context manager. `per_iteration(n)` gives the table."""

    def __init__(self):
        from autograd.function import Function

        self.classes = list(dict.fromkeys(Function.registry.values()))
        # name -> [forward calls, forward seconds, backward calls, backward seconds]
        self.totals = defaultdict(lambda: [0, 0.0, 0, 0.0])
        self._inner = []  # a stack: time spent in nested timed calls, per open call
        self._saved = []

    def _wrap(self, label, method, phase):
        slot = 0 if phase == "forward" else 2
        inner, totals, clock = self._inner, self.totals, time.perf_counter

        def timed(*args, **kwargs):
            inner.append(0.0)
            start = clock()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = clock() - start
                nested = inner.pop()
                entry = totals[label]
                entry[slot] += 1
                entry[slot + 1] += elapsed - nested  # exclusive: nested ops count for themselves
                if inner:
                    inner[-1] += elapsed

        return staticmethod(timed)

    def _label(self, cls):
        same_name = [c for c in self.classes if c.name == cls.name]
        return cls.name if len(same_name) == 1 else f"{cls.__module__}.{cls.__qualname__}"

    def __enter__(self):
        # Resolve every original first: a subclass that inherits its forward must get the
        # original, not the wrapper installed on its parent a moment earlier.
        plan = [(cls, phase, getattr(cls, phase), phase in cls.__dict__, cls.__dict__.get(phase))
                for cls in self.classes for phase in ("forward", "backward")]
        for cls, phase, method, own, original in plan:
            self._saved.append((cls, phase, own, original))
            setattr(cls, phase, self._wrap(self._label(cls), method, phase))
        return self

    def __exit__(self, *exc):
        for cls, phase, own, original in reversed(self._saved):
            if own:
                setattr(cls, phase, original)
            else:
                delattr(cls, phase)
        self._saved.clear()
        return False

    def per_iteration(self, iters):
        """{op: {forward_ms, backward_ms, calls, backward_calls}}, slowest first."""
        rows = {
            name: {"forward_ms": round(fs * 1e3 / iters, 3), "backward_ms": round(bs * 1e3 / iters, 3),
                   "calls": fc // iters, "backward_calls": bc // iters}
            for name, (fc, fs, bc, bs) in self.totals.items() if fc or bc
        }
        return dict(sorted(rows.items(), key=lambda kv: -(kv[1]["forward_ms"] + kv[1]["backward_ms"])))


def build_ours(seed=0):
    """The block, an input that requires grad (as inside a model) and a fixed upstream grad."""
    import autograd as ag
    from tinyllm.model import Block, GPTConfig

    B, T, C, H = SHAPE["batch"], SHAPE["time"], SHAPE["width"], SHAPE["heads"]
    config = GPTConfig(vocab_size=4096, block_size=T, n_layer=6, n_head=H, n_embd=C)
    rng = np.random.default_rng(seed)
    block = Block(config, rng)
    x = ag.tensor(rng.standard_normal((B, T, C), dtype=np.float32), requires_grad=True)
    grad = rng.standard_normal((B, T, C), dtype=np.float32)
    positions = np.arange(T)

    def forward():
        return block(x, positions)

    def backward(out):
        out.backward(grad)

    def reset():  # untimed: the next iteration stores fresh grads instead of adding to these
        block.zero_grad()
        x.grad = None

    return block, x, grad, (forward, backward, reset)


def build_torch(block, x, grad, threads):
    """The same block in PyTorch (benchmarks/torch_gpt.py), holding our weights."""
    import torch
    from torch_gpt import Block as TorchBlock

    torch.set_num_threads(threads)
    C, H = SHAPE["width"], SHAPE["heads"]
    tb = TorchBlock(C, H)
    pairs = {  # torch name -> (our parameter, transpose?)  (our Linear weights are (in, out))
        "ln_1.weight": (block.ln_1.weight, False), "ln_1.bias": (block.ln_1.bias, False),
        "c_attn.weight": (block.attn.c_attn.weight, True), "c_attn.bias": (block.attn.c_attn.bias, False),
        "c_proj.weight": (block.attn.c_proj.weight, True), "c_proj.bias": (block.attn.c_proj.bias, False),
        "ln_2.weight": (block.ln_2.weight, False), "ln_2.bias": (block.ln_2.bias, False),
        "c_fc.weight": (block.mlp.c_fc.weight, True), "c_fc.bias": (block.mlp.c_fc.bias, False),
        "mlp_proj.weight": (block.mlp.c_proj.weight, True), "mlp_proj.bias": (block.mlp.c_proj.bias, False),
    }
    with torch.no_grad():
        for name, p in tb.named_parameters():
            ours, transpose = pairs[name]
            value = torch.from_numpy(np.ascontiguousarray(ours.data.T if transpose else ours.data))
            p.copy_(value)
    tx = torch.from_numpy(x.data.copy()).requires_grad_(True)
    tgrad = torch.from_numpy(grad.copy())

    def forward():
        return tb(tx)

    def backward(out):
        out.backward(tgrad)

    def reset():
        tb.zero_grad(set_to_none=True)
        tx.grad = None

    return forward, backward, reset


def time_step(forward, backward, reset):
    """(forward seconds, backward seconds, output) of one iteration."""
    t0 = time.perf_counter()
    out = forward()
    t1 = time.perf_counter()
    backward(out)
    t2 = time.perf_counter()
    reset()
    return t1 - t0, t2 - t1, out


def ms(seconds):
    return round(seconds * 1e3, 3)


def profile(step, iters):
    """The block timed `iters` times with no instrumentation and `iters` times with every op
    timed, the two kinds alternating so that both see the same machine (a busy machine drifts).
    Returns (clean (forward, backward) medians, the "profiled" summary, the "ops" table).
    The profiled numbers are means, not medians, so that op times and totals add up: the
    engine's overhead is the block's time minus the time inside ops."""
    clean, fwd, bwd = [], [], []
    timer = OpTimer()
    for _ in range(iters):
        clean.append(time_step(*step)[:2])
        with timer:
            tf, tb, _ = time_step(*step)
        fwd.append(tf)
        bwd.append(tb)
    ops = timer.per_iteration(iters)
    total_f, total_b = statistics.mean(fwd) * 1e3, statistics.mean(bwd) * 1e3
    in_f = sum(r["forward_ms"] for r in ops.values())
    in_b = sum(r["backward_ms"] for r in ops.values())
    summary = {"forward_ms": round(total_f, 3), "backward_ms": round(total_b, 3),
               "ops_forward_ms": round(in_f, 3), "ops_backward_ms": round(in_b, 3),
               "engine_overhead_forward_ms": round(total_f - in_f, 3),
               "engine_overhead_backward_ms": round(total_b - in_b, 3)}
    medians = [statistics.median(r[i] for r in clean) for i in (0, 1)]
    return medians, summary, ops


def torch_ops(forward, backward, reset, iters):
    """PyTorch's own profile of the block: self CPU milliseconds per iteration of each aten op
    (forward and backward together; PyTorch names the backward kernels apart, e.g.
    aten::gelu_backward), slowest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            time_step(forward, backward, reset)
    rows = {e.key: {"self_ms": round(e.self_cpu_time_total / 1e3 / iters, 3),
                    "calls": e.count // iters}
            for e in prof.key_averages() if e.self_cpu_time_total > 0}
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["self_ms"]))


def worker_step(args):
    """--step S|M: the whole training step of bench_train.py's config (forward, backward, clip,
    AdamW), its clean timings (medians) and its per-op profile, in this process alone."""
    from bench_train import CONFIGS, ours, theirs

    cfg = CONFIGS[args.step]
    if args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
        step = theirs(cfg, "cpu")
    else:
        step = ours(cfg, "cpu")[0]
    for _ in range(args.warmup):
        step()
    runs = [step() for _ in range(args.iters)]
    clean = [statistics.median(r[i] for r in runs) for i in range(3)]
    result = {"forward_ms": ms(clean[0]), "backward_ms": ms(clean[1]),
              "optimizer_ms": ms(clean[2]), "total_ms": ms(sum(clean))}
    if args.worker == "torch":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.iters):
                step()
        rows = {e.key: {"self_ms": round(e.self_cpu_time_total / 1e3 / args.iters, 3),
                        "calls": e.count // args.iters}
                for e in prof.key_averages() if e.self_cpu_time_total > 0}
        result["ops"] = dict(sorted(rows.items(), key=lambda kv: -kv[1]["self_ms"]))
    else:
        timer = OpTimer()
        with timer:
            timed = [step() for _ in range(args.iters)]
        ops = timer.per_iteration(args.iters)
        total = statistics.mean(sum(t[:2]) for t in timed) * 1e3
        inside = sum(r["forward_ms"] + r["backward_ms"] for r in ops.values())
        from autograd import blas

        result.update({"ops": ops, "engine_overhead_ms": round(total - inside, 3),
                       "blas": blas.library()})
    print(json.dumps(result))


def worker(args):
    """One framework alone in this process: the block's clean timings and its per-op profile."""
    if args.step:
        return worker_step(args)
    block, x, grad, step = build_ours()
    if args.worker == "torch":
        import torch

        step = build_torch(block, x, grad, args.threads)
        for _ in range(args.warmup):
            out = time_step(*step)[2]
        runs = [time_step(*step)[:2] for _ in range(args.iters)]
        clean = [statistics.median(r[i] for r in runs) for i in (0, 1)]
        result = {"forward_ms": ms(clean[0]), "backward_ms": ms(clean[1]),
                  "total_ms": ms(sum(clean)), "ops": torch_ops(*step, args.iters),
                  "torch_threads": torch.get_num_threads()}
        ours_out = block(x, np.arange(SHAPE["time"])).data
        result["max_abs_output_diff"] = float(np.abs(out.detach().numpy() - ours_out).max())
    else:
        from autograd import blas, parallel

        for _ in range(args.warmup):
            time_step(*step)
        clean, profiled, ops = profile(step, args.iters)
        result = {"forward_ms": ms(clean[0]), "backward_ms": ms(clean[1]),
                  "total_ms": ms(sum(clean)), "profiled": profiled, "ops": ops,
                  "pool_threads": parallel.num_threads(), "blas": blas.library()}
    print(json.dumps(result))


def run_worker(args, framework):
    """A fresh process for one framework, its BLAS and OpenMP pools pinned to --threads (and
    OpenBLAS's spin bounded for ours, as the tinyllm command does)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if framework == "ours":
        from tinyllm.blas_spin import bound_blas_spin

        bound_blas_spin(env)
    cmd = [sys.executable, __file__, "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--worker", framework]
    if args.step:
        cmd += ["--step", args.step]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"the {framework} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description="forward/backward time of one GPT block, by op")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of each framework (BLAS, OpenMP, torch.set_num_threads)")
    parser.add_argument("--compare", choices=["torch"], default=None)
    parser.add_argument("--step", choices=["S", "M", "small"], default=None,
                        help="profile the whole training step of this bench_train.py config "
                             "(forward, backward, clipping, AdamW) instead of one M block")
    parser.add_argument("--worker", choices=["ours", "torch"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    # Each framework in a process of its own, ours first: in one process, one library's idle
    # worker threads spin on the cores the other needs, and both come out slower.
    ours = run_worker(args, "ours")
    shape = {"step": args.step} if args.step else SHAPE
    result = {
        "benchmark": "profile_block", **shape, "dtype": "float32", "threads": args.threads,
        "iters": args.iters, "warmup": args.warmup, "load_average": round(os.getloadavg()[0], 2),
        "method": "each framework in its own process; clean timings are medians, the per-op "
                  "tables means of profiled iterations",
        **ours,
    }
    if args.compare == "torch":
        try:
            import torch  # noqa: F401  (only to know it is there; the worker imports it)
        except ImportError:
            print("PyTorch is not installed: pip install torch", file=sys.stderr)
        else:
            theirs = run_worker(args, "torch")
            result["torch"] = theirs
            result["ratio_vs_torch"] = {  # above 1: ours is slower
                part: round(ours[f"{part}_ms"] / theirs[f"{part}_ms"], 3)
                for part in ("forward", "backward", "total")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
