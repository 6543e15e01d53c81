"""PyTorch's side of bench_distributed.py: the same GPT trained by one process with 2 threads,
and by 2 processes with 1 thread each under DistributedDataParallel (gloo, all-reduce of the
gradients after backward), each rank with its own batch of bench_train's config.

    python benchmarks/bench_distributed_torch.py [--config S M] [--steps 8] [--warmup 2]

Prints one JSON line: tokens/s of both layouts per config (all ranks' tokens, median step time
after the warm-up). Compare with bench_distributed.py's "1 rank x 2 threads" and "2 ranks x 1
thread" on the same machine: which framework gains more from a process per core.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def worker(config, steps, warmup, rank, world):
    import torch
    import torch.distributed as dist
    from bench_train import CONFIGS
    from torch_gpt import TorchGPT

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cfg = CONFIGS[config]
    torch.manual_seed(0)
    model = TorchGPT(**{k: v for k, v in cfg.items() if k != "batch_size"})
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
        model = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=3e-4,
                            betas=(0.9, 0.95), foreach=True)
    g = torch.Generator().manual_seed(rank)
    shape = (cfg["batch_size"], cfg["block_size"])
    x = torch.randint(0, cfg["vocab_size"], shape, generator=g)
    y = torch.randint(0, cfg["vocab_size"], shape, generator=g)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        model(x, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        tokens = world * cfg["batch_size"] * cfg["block_size"]
        print(json.dumps({"tokens_per_s": round(tokens / statistics.median(times))}))


def run(config, world, threads, args):
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", config, str(rank),
                               str(world), str(args.steps), str(args.warmup)],
                              env=env, stdout=subprocess.PIPE, text=True)
             for rank in range(world)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit(f"a PyTorch worker failed ({config}, {world} ranks)")
    return json.loads(outs[0].strip().splitlines()[-1])["tokens_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=["S", "M"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        config, rank, world, steps, warmup = args.worker
        return worker(config, int(steps), int(warmup), int(rank), int(world))
    cores = os.cpu_count()
    result = {"benchmark": "distributed_torch", "machine": f"{cores} cores", "sizes": {}}
    for config in args.config:
        result["sizes"][config] = {
            f"1 process x {cores} threads tokens/s": run(config, 1, cores, args),
            f"{cores} ranks x 1 thread (DDP, gloo) tokens/s": run(config, cores, 1, args)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
