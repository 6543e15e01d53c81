"""`tinyllm finetune` and `tinyllm chat`.

Every field of FinetuneConfig is a flag (`--batch-size 32 --lr 1e-3 ...`), so a field added to
the config (as LoRA's options are) is a flag with no change here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from tinyllm.align.sft import FinetuneConfig

_POSITIONAL = {"base", "data", "out_dir"}  # given as BASE_RUN, --data, --out


def add_config_flags(parser, cls, skip=()):
    """One `--name` flag per dataclass field (default None: "not given, keep the default")."""
    group = parser.add_argument_group("fine-tuning")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(flag, dest=f.name, default=None,
                               action=argparse.BooleanOptionalAction)
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        group.add_argument(flag, dest=f.name, type=base, default=None,
                           metavar=base.__name__.upper(), help=f"default: {f.default!r}")


def register(subparsers):
    p = subparsers.add_parser(
        "finetune", help="supervised fine-tuning of a run on prompt/response examples",
        description="Fine-tune a pre-trained run on chat examples: a JSONL file "
                    "(prompt/response, Alpaca instruction/input/output, or messages) or a "
                    "built-in task (builtin:reverse, builtin:sort, builtin:add, builtin:mix). "
                    "The loss counts only the assistant's tokens.")
    p.add_argument("base", nargs="?", metavar="BASE_RUN", help="the pre-trained run folder")
    p.add_argument("--data", default=None, help="FILE.jsonl or builtin:NAME "
                                                "(default builtin:reverse)")
    p.add_argument("--out", dest="out_dir", default=None, help="the new run's folder")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the fine-tuning run in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, FinetuneConfig, skip=_POSITIONAL | {"progress"})
    p.set_defaults(func=run_finetune)

    c = subparsers.add_parser("chat", help="chat with a fine-tuned run in the terminal",
                              description="A terminal chat using the chat template. "
                                          "/reset, /system TEXT, /help; Ctrl-D quits.")
    c.add_argument("run_dir", metavar="RUN")
    c.add_argument("--system", default=None, help="a system message to start with")
    c.add_argument("--max-new-tokens", type=int, default=100)
    c.add_argument("--temperature", type=float, default=0.8)
    c.add_argument("--top-k", type=int, default=40)
    c.add_argument("--top-p", type=float, default=None)
    c.add_argument("--seed", type=int, default=None)
    c.set_defaults(func=_run_chat)


def _given(args):
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(FinetuneConfig)
            if getattr(args, f.name, None) is not None}


def run_finetune(args) -> int:
    from pathlib import Path

    from tinyllm.align.sft import FineTuner
    from tinyllm.checkpoint import read_json

    if args.resume:
        if not (Path(args.resume) / "config.json").exists():
            raise FileNotFoundError(f"{args.resume}: not a run directory (no config.json)")
        saved = read_json(Path(args.resume) / "config.json").get("finetune")
        if saved is None:
            raise ValueError(f"{args.resume}: not a fine-tuning run (resume pre-training runs "
                             "with tinyllm train --resume)")
        cfg = FinetuneConfig.from_dict({**saved, "out_dir": args.resume})
        if args.max_steps is not None:  # fine-tune on to a new step count
            cfg.max_steps = args.max_steps
        cfg.progress = cfg.progress and not args.quiet
        tuner = FineTuner(cfg, resume=True)
    else:
        if not args.base or not args.out_dir:
            raise ValueError("give the pre-trained run and a new folder: "
                             "tinyllm finetune BASE_RUN --data FILE|builtin:NAME --out RUN")
        over = _given(args)
        over.update(base=args.base, out_dir=args.out_dir, progress=not args.quiet)
        if args.data:
            over["data"] = args.data
        tuner = FineTuner(FinetuneConfig(**over))
    summary = tuner.run()
    print(json.dumps(summary, indent=2))
    print(f"held-out exact match: {summary['base_exact_match']:.1%} (base) -> "
          f"{summary['exact_match']:.1%} after {summary['steps']} steps; "
          f"chat with: tinyllm chat {summary['run_dir']}", file=sys.stderr)
    return 0


def _run_chat(args) -> int:
    from tinyllm.chat import run_chat

    return run_chat(args)
