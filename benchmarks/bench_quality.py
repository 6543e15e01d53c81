"""Quality per minute: the default `tinyllm train` against the same GPT in PyTorch eager.

    python benchmarks/bench_quality.py --compare torch [--minutes 5] [--threads 2] [--out DIR]

Both train on the same prepared data and tokenizer (the default configuration's corpus and
vocabulary, prepared once into OUT/data) for the same wall time, each in a process of its own
with the same thread count, one after the other:
- ours: the `tinyllm train` command itself, with its default preset, given --max-minutes (it
  plans its step count and learning-rate schedule to fit the time, evaluates every
  eval_interval steps and saves checkpoints, as a user's run does);
- PyTorch: benchmarks/torch_gpt.py with the same model configuration (dropout included), the
  same batches (tinyllm's BatchLoader, same seed), AdamW with the same settings and parameter
  groups, the same clipping, warmup + cosine schedule and step planning, and the same periodic
  evaluation (so both spend their minutes the same way).
Then each is scored on the whole validation split by the same function,
tinyllm.evaluate.perplexity.score_tokens (for PyTorch through a thin adapter that runs its
model), in bits per byte. Prints one JSON line with both bits per byte, steps and tokens/s.
A full run takes a little over twice --minutes of wall time (plus the data preparation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))


def default_config():
    """(GPTConfig fields, TrainConfig) of a plain `tinyllm train`: the default preset."""
    from tinyllm.train import PRESETS, TrainConfig
    from tinyllm.train_cli import DEFAULT_PRESET

    model, train = PRESETS[DEFAULT_PRESET]
    return dict(model), TrainConfig(**train)


def prepare_data(folder: Path, cfg, vocab_size: int) -> None:
    from tinyllm.data.prepare import prepare

    if not (folder / "meta.json").exists():
        prepare(cfg.data, folder, vocab_size=vocab_size, progress=False)


def whole_split_bpb(model, data_dir: Path, batch_size: int) -> dict:
    """Bits per byte (and loss) of `model` on the whole validation split."""
    from tinyllm.data.prepared import load_prepared
    from tinyllm.evaluate.perplexity import score_tokens

    data = load_prepared(data_dir)
    result = score_tokens(model, data.val, batch_size=batch_size, tokenizer=data.tokenizer)
    return {"bits_per_byte": round(result.bits_per_byte, 4), "val_loss": round(result.loss, 4),
            "val_tokens_scored": result.tokens}


class TorchForScoring:
    """What score_tokens needs of a model (config.block_size, eval/train, a call returning
    (logits, _) whose .data is a NumPy array), around the PyTorch GPT."""

    class _Logits:
        def __init__(self, data):
            self.data = data

    def __init__(self, model, block_size):
        self.model = model
        self.config = type("Config", (), {"block_size": block_size})()

    @property
    def training(self):
        return self.model.training

    def eval(self):
        self.model.eval()

    def train(self, mode=True):
        self.model.train(mode)

    def __call__(self, idx):
        import torch

        with torch.no_grad():
            logits = self.model(torch.from_numpy(idx))
        return self._Logits(logits.numpy()), None


def torch_worker(args):
    """Train the PyTorch GPT as `tinyllm train` trains ours, for --minutes, then score it."""
    import numpy as np
    import torch
    from torch_gpt import TorchGPT

    from autograd.optim.schedules import warmup_cosine
    from tinyllm.data.dataset import BatchLoader
    from tinyllm.data.prepared import load_prepared
    from tinyllm.evaluate.perplexity import score_tokens

    torch.set_num_threads(args.threads)
    model_cfg, c = default_config()
    data = load_prepared(args.data)
    model_cfg["vocab_size"] = data.tokenizer.vocab_size
    torch.manual_seed(c.seed)
    model = TorchGPT(model_cfg["vocab_size"], model_cfg["block_size"], model_cfg["n_layer"],
                     model_cfg["n_head"], model_cfg["n_embd"], dropout=model_cfg.get("dropout", 0))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=c.lr,
                            betas=(c.beta1, c.beta2), foreach=True)
    T = model_cfg["block_size"]
    loader = BatchLoader(data.train, c.batch_size, T, seed=c.seed)
    scorer = TorchForScoring(model, T)
    minutes = args.minutes
    planned, step, start = c.max_steps, 0, time.perf_counter()
    model.train()
    while step < planned:
        x, y = (torch.from_numpy(a) for a in loader.next_batch())
        lr = warmup_cosine(step, c.lr, min(c.warmup_steps, planned), planned, c.min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        elapsed = time.perf_counter() - start
        if step % c.eval_interval == 0 or step == planned:  # the trainer's periodic evaluation
            score_tokens(scorer, data.val, batch_size=c.batch_size, max_tokens=c.eval_tokens,
                         seed=c.seed, tokenizer=data.tokenizer)
            elapsed = time.perf_counter() - start
        if step in (10, 50) or step % c.eval_interval == 0:  # as Trainer._plan_steps
            budget = minutes * 60 - elapsed
            planned = max(step + 1, min(c.max_steps, step + int(budget / (elapsed / step))))
    wall = time.perf_counter() - start
    result = {"steps": step, "train_seconds": round(wall, 1),
              "tokens_per_s": round(step * c.batch_size * T / wall, 1),
              "torch_threads": torch.get_num_threads()}
    result.update(whole_split_bpb(scorer, args.data, c.batch_size))
    assert np.isfinite(result["bits_per_byte"])
    print(json.dumps(result))


def ours_score_worker(args):
    """Score the finished `tinyllm train` run on the whole validation split."""
    from tinyllm.checkpoint import read_json
    from tinyllm.evaluate.runs import load_run

    model, _, config = load_run(args.run)
    summary = read_json(Path(args.run) / "summary.json")
    result = {"steps": summary["steps"], "train_seconds": round(summary["wall_s"], 1),
              "tokens_per_s": round(summary["tokens_per_s"], 1)}
    result.update(whole_split_bpb(model, args.data, config["train"]["batch_size"]))
    print(json.dumps(result))


def _env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _run(cmd, env, what):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{what} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def main():
    parser = argparse.ArgumentParser(description="bits per byte after the same training time")
    parser.add_argument("--compare", choices=["torch"], default=None)
    parser.add_argument("--minutes", type=float, default=5.0, help="training time of each")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=None, help="folder for the data and the run "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--worker", choices=["torch", "ours-score"], default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (math.isfinite(args.minutes) and args.minutes > 0):
        parser.error(f"--minutes must be a positive number, got {args.minutes}")
    if args.worker == "torch":
        return torch_worker(args)
    if args.worker == "ours-score":
        return ours_score_worker(args)

    with tempfile.TemporaryDirectory(prefix="bench_quality-") as tmp:
        out = Path(args.out or tmp)
        model_cfg, cfg = default_config()
        data_dir = out / "data"
        prepare_data(data_dir, cfg, model_cfg["vocab_size"])
        env = _env(args.threads)
        run_dir = out / f"ours-{int(time.time())}"
        # The tinyllm command as a user runs it (it bounds the BLAS spin itself).
        _run([sys.executable, "-m", "tinyllm", "train", "--data", str(data_dir), "--out",
              str(run_dir), "--max-minutes", str(args.minutes), "--quiet"], env, "tinyllm train")
        result = {"benchmark": "quality", "minutes": args.minutes, "threads": args.threads,
                  "config": {**model_cfg, "batch_size": cfg.batch_size, "lr": cfg.lr},
                  "method": "each framework in its own process, the same data, batches, "
                            "schedule and time; both scored on the whole validation split "
                            "by tinyllm.evaluate.perplexity.score_tokens"}
        score = [sys.executable, __file__, "--threads", str(args.threads), "--data",
                 str(data_dir)]
        result["ours"] = json.loads(_run(score + ["--worker", "ours-score", "--run",
                                                  str(run_dir)], env, "scoring ours"))
        if args.compare == "torch":
            try:
                import torch  # noqa: F401  (only to know it is there; the worker imports it)
            except ImportError:
                print("PyTorch is not installed: pip install torch", file=sys.stderr)
            else:
                result["torch"] = json.loads(_run(score + ["--worker", "torch", "--minutes",
                                                           str(args.minutes)], env, "PyTorch"))
                result["bpb_ours_minus_torch"] = round(
                    result["ours"]["bits_per_byte"] - result["torch"]["bits_per_byte"], 4)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
