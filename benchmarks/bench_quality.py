"""Quality per minute: the default `tinyllm train` against the same GPT in PyTorch eager.

    python benchmarks/bench_quality.py --compare torch               # the preset's 4.5 minutes
    python benchmarks/bench_quality.py --compare torch --minutes 0.5 # a quick look

Both train the same model (the `small` preset: 6 layers x 128 wide, dropout 0.25) from the same
initial weights on the same prepared data and tokenizer, with the same batches, optimizer
(AdamW, decay on 2-D weights), warmup + cosine schedule, gradient clipping and time budget, each
framework in its own process with 2 threads. The step count is planned to fit the budget the way
`tinyllm train` plans it (re-planned at steps 10 and 50 from the measured speed), so the faster
framework takes more steps with a longer schedule. Afterwards this process scores both final
models with one function (tinyllm.evaluate.perplexity.score_tokens) on the whole validation
split and prints one JSON line: bits per byte, steps and tokens/s of each.

Both are also scored every `eval_interval` steps (the preset's 250), with the same function on
the same split: ours by the command itself, as the default run does (the time is inside its
budget), the twin from weight snapshots scored afterwards (its clock does not pay for them).
On a small corpus a few minutes are many epochs, and the model that takes more steps may end
worse than it was midway: `best_val_bpb` (the best of these scores) tells that apart from
speed, next to `val_bpb` (the final model).

Ours runs as the real command (`python -m tinyllm train`), so it is what a user gets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THREADS = "2"


def prepare_data(source, folder, vocab_size):
    from tinyllm.data.prepare import prepare

    prepare(source, folder, vocab_size=vocab_size, progress=False)
    return folder


def ours(prepared, out, minutes):
    """The default `tinyllm train` on the prepared folder, evaluating every eval_interval steps
    as the default run does; returns its steps, speed and the validation score of each
    evaluation ({step: bits per byte})."""
    cmd = [sys.executable, "-m", "tinyllm", "train", "--data", str(prepared), "--out", str(out),
           "--max-minutes", str(minutes), "--quiet"]
    subprocess.run(cmd, env=_env(), check=True, capture_output=True, text=True)
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # wall_s includes the evaluations and samples, as the command reports it.
    return {"steps": summary["steps"], "train_s": round(summary["wall_s"], 1),
            "tokens_per_s": round(summary["tokens_per_s"]),
            "val_bpb_at": {r["step"]: round(r["val_bpb"], 4) for r in records if "val_bpb" in r}}


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": THREADS,
            "OPENBLAS_NUM_THREADS": THREADS, "MKL_NUM_THREADS": THREADS}


# ---- the PyTorch side (its own process) ---------------------------------------------------------
def torch_worker(plan):
    """Train the PyTorch twin for `minutes`, starting from our initial weights; save its weights
    under our names (npz) and print its step count and speed."""
    import torch

    from autograd.optim.schedules import warmup_cosine
    from tinyllm.data.dataset import BatchLoader
    from tinyllm.data.prepared import load_prepared
    from tinyllm.train import PRESETS, TrainConfig

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from torch_gpt import TorchGPT

    torch.set_num_threads(int(THREADS))
    model_cfg, train_cfg = PRESETS["small"]
    c = TrainConfig(**train_cfg)  # the defaults `tinyllm train` fills in
    data = load_prepared(plan["prepared"])
    V = data.tokenizer.vocab_size
    model = TorchGPT(V, model_cfg["block_size"], model_cfg["n_layer"], model_cfg["n_head"],
                     model_cfg["n_embd"], dropout=model_cfg["dropout"])
    load_ours_into_torch(model, dict(np.load(plan["init"])))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=c.lr, betas=(c.beta1, c.beta2), eps=1e-8)
    loader = BatchLoader(data.train, c.batch_size, model_cfg["block_size"], seed=c.seed)
    budget, planned, step = plan["minutes"] * 60, c.max_steps, 0
    model.train()
    snapshots = {}
    start = time.perf_counter()
    while step < planned:
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, c.lr, min(c.warmup_steps, planned), planned, c.min_lr)
        x, y = loader.next_batch()
        loss = model(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        opt.step()
        step += 1
        if step % c.eval_interval == 0:  # scored afterwards, outside this clock
            snapshots[step] = f"{plan['out']}.step{step}.npz"
            np.savez(snapshots[step], **torch_to_ours(model))
        if step in (10, 50):  # as tinyllm.train's _plan_steps
            spent = time.perf_counter() - start
            planned = max(step + 1, min(c.max_steps, step + int((budget - spent) / (spent / step))))
    train_s = time.perf_counter() - start
    np.savez(plan["out"], **torch_to_ours(model))
    tokens = step * c.batch_size * model_cfg["block_size"]
    print(json.dumps({"steps": step, "train_s": round(train_s, 1),
                      "tokens_per_s": round(tokens / train_s), "snapshots": snapshots}))


def _pairs(n_layer):
    """(our name, torch name, transpose?) for every parameter: our linear weights are (in, out),
    PyTorch's (out, in)."""
    pairs = [("transformer.wte.weight", "wte.weight", False),
             ("transformer.wpe.weight", "wpe.weight", False),
             ("transformer.ln_f.weight", "ln_f.weight", False),
             ("transformer.ln_f.bias", "ln_f.bias", False)]
    for i in range(n_layer):
        for ours_, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
            for kind in ("weight", "bias"):
                pairs.append((f"transformer.h.{i}.{ours_}.{kind}", f"h.{i}.{theirs}.{kind}", False))
        for ours_, theirs in (("attn.c_attn", "c_attn"), ("attn.c_proj", "c_proj"),
                              ("mlp.c_fc", "c_fc"), ("mlp.c_proj", "mlp_proj")):
            pairs.append((f"transformer.h.{i}.{ours_}.weight", f"h.{i}.{theirs}.weight", True))
            pairs.append((f"transformer.h.{i}.{ours_}.bias", f"h.{i}.{theirs}.bias", False))
    return pairs


def load_ours_into_torch(model, weights):
    import torch

    theirs = dict(model.named_parameters())
    with torch.no_grad():
        for name, their_name, transpose in _pairs(len(model.h)):
            value = weights[name].T if transpose else weights[name]
            theirs[their_name].copy_(torch.from_numpy(np.ascontiguousarray(value)))


def torch_to_ours(model):
    theirs = {k: v.detach().numpy() for k, v in model.named_parameters()}
    return {name: (theirs[t].T if transpose else theirs[t]).copy()
            for name, t, transpose in _pairs(len(model.h))}


# ---- the comparison -----------------------------------------------------------------------------
def score(model, data):
    from tinyllm.evaluate.perplexity import score_tokens

    result = score_tokens(model, data.val, batch_size=16, tokenizer=data.tokenizer)
    return {"val_bpb": round(result.bits_per_byte, 4), "val_loss": round(result.loss, 4),
            "val_tokens": result.tokens}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=["torch"], required=True)
    parser.add_argument("--minutes", type=float, default=None,
                        help="training time of each (default: the small preset's budget)")
    parser.add_argument("--data", default="builtin:pydoc", help="what `tinyllm train` trains on")
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        return torch_worker(json.loads(args.torch_worker))

    import tinyllm
    from tinyllm.data.prepared import load_prepared
    from tinyllm.model import GPT, GPTConfig
    from tinyllm.train import PRESETS

    model_cfg, train_cfg = PRESETS["small"]
    minutes = args.minutes or train_cfg["max_minutes"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = prepare_data(args.data, tmp / "prepared", model_cfg["vocab_size"])
        data = load_prepared(prepared)
        init = GPT(GPTConfig(**{**model_cfg, "vocab_size": data.tokenizer.vocab_size}), seed=0)
        np.savez(tmp / "init.npz", **{k: np.asarray(v) for k, v in init.state_dict().items()})
        result = {"minutes": minutes, "preset": "small", "data": args.data,
                  "threads": int(THREADS), "machine": f"{os.cpu_count()} cores",
                  "load_average_at_start": round(os.getloadavg()[0], 2)}
        result["tinyllm"] = ours(prepared, tmp / "ours", minutes)
        result["tinyllm"].update(score(tinyllm.load(tmp / "ours")[0], data))
        plan = {"prepared": str(prepared), "init": str(tmp / "init.npz"),
                "out": str(tmp / "torch.npz"), "minutes": minutes}
        proc = subprocess.run([sys.executable, __file__, "--compare", "torch", "--torch-worker",
                               json.dumps(plan)], env=_env(), check=True, capture_output=True,
                              text=True)
        result["torch"] = json.loads(proc.stdout.strip().splitlines()[-1])
        twin = GPT(init.config, seed=0)
        twin.eval()
        scored = {}
        for step, path in result["torch"].pop("snapshots").items():
            twin.load_state_dict(dict(np.load(path)))
            scored[int(step)] = score(twin, data)["val_bpb"]
        result["torch"]["val_bpb_at"] = scored
        twin.load_state_dict(dict(np.load(tmp / "torch.npz")))
        result["torch"].update(score(twin, data))
    for side in ("tinyllm", "torch"):
        r = result[side]
        at = {**r["val_bpb_at"], r["steps"]: r["val_bpb"]}  # the final model's score too
        r["best_step"] = min(at, key=at.get)
        r["best_val_bpb"] = at[r["best_step"]]
    result["ours_minus_torch_bpb"] = round(result["tinyllm"]["val_bpb"] - result["torch"]["val_bpb"], 4)
    result["ours_minus_torch_best_bpb"] = round(result["tinyllm"]["best_val_bpb"]
                                                - result["torch"]["best_val_bpb"], 4)
    result["steps_ratio_torch_over_ours"] = round(result["torch"]["steps"]
                                                  / result["tinyllm"]["steps"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
