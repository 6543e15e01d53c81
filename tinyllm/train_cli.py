"""`tinyllm train` and `tinyllm sample`.

Every field of GPTConfig and TrainConfig is a flag (`--n-layer 4 --lr 1e-3 ...`); a preset
(`--preset tiny|small|medium`, default small) fills in the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from tinyllm.model import GPTConfig
from tinyllm.train import PRESETS, TrainConfig

_SKIP = {"model"}  # TrainConfig.model is filled from the GPTConfig flags


def _flag(name):
    return "--" + name.replace("_", "-")


def _add_dataclass_flags(parser, cls, group_title):
    group = parser.add_argument_group(group_title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in _SKIP:
            continue
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(_flag(f.name), dest=f.name, default=None,
                               action=argparse.BooleanOptionalAction)
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        group.add_argument(_flag(f.name), dest=f.name, type=base, default=None,
                           metavar=base.__name__.upper(), help=f"default: {f.default!r}"
                           if f.default is not dataclasses.MISSING else None)


def register(subparsers):
    p = subparsers.add_parser(
        "train", help="train a tokenizer and a GPT (default: on the built-in corpus)",
        description="Train a GPT. With no arguments: the 'small' preset on CPython's built-in "
                    "documentation, about five minutes on a 2-core CPU.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    p.add_argument("--out", dest="out_dir", default=None, help="run directory (default runs/tinyllm, or runs/tinyllm-N when that holds a run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_dataclass_flags(p, GPTConfig, "model")
    _add_dataclass_flags(p, TrainConfig, "training")
    p.set_defaults(func=run_train)

    s = subparsers.add_parser("sample", help="generate text from a trained run")
    s.add_argument("run_dir")
    s.add_argument("--prompt", default="\n")
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=40)
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--num-samples", type=int, default=1)
    s.set_defaults(func=run_sample)


def config_from_args(args) -> TrainConfig:
    model_over, train_over = PRESETS[args.preset]
    model = dict(model_over)
    train = dict(train_over)
    for f in dataclasses.fields(GPTConfig):
        if getattr(args, f.name, None) is not None:
            model[f.name] = getattr(args, f.name)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in _SKIP and getattr(args, f.name, None) is not None:
            train[f.name] = getattr(args, f.name)
    if args.max_steps is not None and args.max_minutes is None:
        train["max_minutes"] = None  # an explicit step count wins over the preset's time budget
    if args.quiet:
        train["progress"] = False
    return TrainConfig(**train, model=model)


def run_train(args) -> int:
    from tinyllm.train import Trainer, TrainingDiverged

    if args.resume:
        from tinyllm.train import resume_config

        given = {f.name: getattr(args, f.name) for cls in (GPTConfig, TrainConfig)
                 for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
        if args.quiet:
            given["progress"] = False
        trainer = Trainer(resume_config(args.resume, given), resume=True)  # refuses what it can't do
    else:
        trainer = Trainer(config_from_args(args))
    try:
        summary = trainer.run()
    except TrainingDiverged as err:
        print(f"tinyllm train: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    print(f"saved to {summary['run_dir']}  (sample: tinyllm sample {summary['run_dir']})",
          file=sys.stderr)
    return 0


def run_sample(args) -> int:
    import numpy as np

    from tinyllm.checkpoint import checkpoint_dir, load_weights, read_json
    from tinyllm.model import GPT
    from tinyllm.tokenizer import BPETokenizer

    config = read_json(f"{args.run_dir}/config.json")
    model = GPT(GPTConfig.from_dict(config["model"]))
    load_weights(model, checkpoint_dir(args.run_dir))
    tok = BPETokenizer.load(f"{args.run_dir}/tokenizer.json")
    ids = tok.encode(args.prompt, allowed_special="all")
    if not ids:
        raise ValueError("the prompt encodes to no tokens; give at least one character")
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        stream = model.stream(np.asarray([ids]), args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=seed,
                              stop_tokens=list(tok.special_tokens.values()))
        sys.stdout.write(args.prompt)
        produced = []
        for column in stream:  # print as the tokens come; decode whole to keep UTF-8 intact
            produced.append(int(column[0]))
            text = tok.decode(produced)
            if not text.endswith("\ufffd"):
                sys.stdout.write(text)
                sys.stdout.flush()
                produced = []
        sys.stdout.write(tok.decode(produced) + "\n")
        if i + 1 < args.num_samples:
            sys.stdout.write("-" * 40 + "\n")
    return 0
