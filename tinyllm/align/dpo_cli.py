"""`tinyllm dpo BASE_RUN --data FILE|builtin:NAME --out RUN`: preference alignment (DPO).

    tinyllm dpo runs/sft --data builtin:brackets --out runs/dpo
    tinyllm dpo runs/sft --data prefs.jsonl --out runs/dpo-lora --lora-rank 8
    tinyllm dpo --resume runs/dpo                        # continue an interrupted run
"""

from __future__ import annotations

import json
import sys

from tinyllm.align.dpo_train import DPOConfig


def register(subparsers):
    p = subparsers.add_parser(
        "dpo", help="align a fine-tuned run to preference pairs (DPO)",
        description="Direct Preference Optimization: train BASE_RUN to prefer the 'chosen' "
                    "reply over the 'rejected' one of each pair. Data: JSONL lines "
                    '{"prompt", "chosen", "rejected"} (or "messages" instead of "prompt"), '
                    "or builtin:brackets / builtin:correct.")
    p.add_argument("base_run", nargs="?", help="the run to start from (usually an SFT run)")
    p.add_argument("--data", default=None, help="JSONL file or builtin:NAME "
                   "(default builtin:brackets)")
    p.add_argument("--out", dest="out_dir", default=None, help="run directory (default runs/dpo)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the DPO run saved in RUN_DIR")
    p.add_argument("--beta", type=float, default=None, help="strength of the KL anchor "
                   "(default 0.1)")
    p.add_argument("--sft-weight", type=float, default=None,
                   help="add this times the chosen replies' NLL per token to the loss (RPO; "
                        "default 0: plain DPO)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (default 8)")
    p.add_argument("--max-steps", type=int, default=None, help="default 200")
    p.add_argument("--eval-interval", type=int, default=None, help="default 50")
    p.add_argument("--train-pairs", type=int, default=None,
                   help="built-in data: pairs to draw for training (default 2000)")
    p.add_argument("--test-pairs", type=int, default=None,
                   help="built-in data: held-out pairs (default 200)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from tinyllm.align.lora import add_lora_arguments

    add_lora_arguments(p)
    p.set_defaults(func=run_dpo)


_FIELDS = ("beta", "sft_weight", "lr", "batch_size", "max_steps", "eval_interval", "train_pairs",
           "test_pairs", "seed", "data", "out_dir")


def _check(cfg):
    for name in ("batch_size", "max_steps", "eval_interval"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got "
                             f"{getattr(cfg, name)}")
    if cfg.beta <= 0:
        raise ValueError(f"--beta must be positive, got {cfg.beta}")


def run_dpo(args) -> int:
    from pathlib import Path

    from tinyllm.align.dpo_train import DPOTrainer
    from tinyllm.align.lora import lora_config_from_args
    from tinyllm.checkpoint import read_json

    if args.resume:
        if not (Path(args.resume) / "config.json").exists():
            raise FileNotFoundError(f"{args.resume}: not a run directory (no config.json)")
        cfg = DPOConfig.from_dict({**read_json(Path(args.resume) / "config.json")["dpo"],
                                   "out_dir": args.resume})
        if args.max_steps is not None:
            cfg.max_steps = args.max_steps
        cfg.progress = cfg.progress and not args.quiet
        trainer = DPOTrainer(cfg, resume=True)
    else:
        if not args.base_run:
            raise ValueError("give the run to start from: tinyllm dpo BASE_RUN --data ... "
                             "--out RUN (or --resume RUN)")
        cfg = DPOConfig(base_run=args.base_run, progress=not args.quiet)
        for name in _FIELDS:
            if getattr(args, name, None) is not None:
                setattr(cfg, name, getattr(args, name))
        lora = lora_config_from_args(args)
        cfg.lora = lora.to_dict() if lora else None
        _check(cfg)
        trainer = DPOTrainer(cfg)
    summary = trainer.run()
    print(json.dumps(summary, indent=2))
    print(f"saved to {summary['run_dir']}  (chat: tinyllm chat {summary['run_dir']})",
          file=sys.stderr)
    return 0
