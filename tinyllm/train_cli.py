"""`tinyllm train`, `tinyllm sample` and `tinyllm plot`.

Every field of GPTConfig and TrainConfig is a flag (`--n-layer 4 --lr 1e-3 ...`); a preset
(`--preset tiny|small|medium`, default small) fills in the rest. The flags are made from the
dataclasses, so a field added there is a flag here (its help comes from the field's
`metadata={"help": ...}` or from `_HELP` below). Every value is checked (tinyllm.validate)
before any data is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from tinyllm.model import CONFIG_CHOICES, GPTConfig
from tinyllm.train import PRESETS, TrainConfig
from tinyllm.validate import DTYPES, check_sampling, check_train, flag_name

DEFAULT_PRESET = "small"
# TrainConfig.model comes from the model flags; out_dir is --out; progress is --quiet.
_SKIP = {"model", "out_dir", "progress"}
_CHOICES = {**CONFIG_CHOICES, "device": ("cpu", "cuda")}
_HELP = {
    "vocab_size": "tokens in the vocabulary (a tokenizer trained for the run gets this size)",
    "block_size": "the longest context, in tokens",
    "n_layer": "transformer blocks", "n_head": "attention heads per block",
    "n_embd": "width of the residual stream", "dropout": "dropout probability, in [0, 1)",
    "bias": "biases in linear and norm layers (GPT-2)",
    "pos": "positions: learned embeddings (GPT-2) or rotary (LLaMA)",
    "mlp": "feed-forward: GELU (GPT-2) or gated SwiGLU (LLaMA)",
    "norm": "LayerNorm (GPT-2) or RMSNorm (LLaMA)",
    "tie_weights": "the output layer reuses the token embedding",
    "dtype": "floating-point type of weights and activations",
    "rope_base": "RoPE's frequency base",
    "data": "text files or folders (.txt .md .html .jsonl), a prepared folder, or builtin:NAME",
    "tokenizer": "a saved tokenizer (JSON) instead of training one",
    "batch_size": "sequences per micro-batch",
    "grad_accum": "micro-batches per optimizer step",
    "max_steps": "optimizer steps (an explicit value also drops the preset's time budget)",
    "max_minutes": "plan the step count to fit this many minutes",
    "lr": "peak learning rate", "min_lr": "learning rate at the end of the cosine decay",
    "warmup_steps": "steps of linear warmup", "weight_decay": "AdamW weight decay",
    "beta1": "AdamW beta1", "beta2": "AdamW beta2",
    "grad_clip": "clip the gradient norm to this",
    "eval_interval": "evaluate, sample and save a checkpoint every N steps",
    "eval_tokens": "score the whole validation split up to this many tokens, else a seeded "
                   "sample of windows",
    "sample_tokens": "tokens sampled at each evaluation",
    "seed": "seed of initialisation, batches and dropout",
    "device": "where to train (cuda needs CuPy)",
    "skip_nonfinite": "skip a batch whose loss or gradient is NaN/inf instead of stopping",
}


def preset_value(preset, field):
    """The value a preset gives a dataclass field: its override, else the field's default."""
    model_over, train_over = PRESETS[preset]
    overrides = {**model_over, **train_over}
    if field.name in overrides:
        return overrides[field.name]
    if field.default is not dataclasses.MISSING:
        return field.default
    return None


def _default_help(field):
    """'default: 128 (tiny: 64, medium: 256)': the default preset's value, then the others'."""
    def show(value):
        return "none" if value is None else str(value)

    shown = preset_value(DEFAULT_PRESET, field)
    others = [f"{p}: {show(preset_value(p, field))}" for p in PRESETS
              if p != DEFAULT_PRESET and preset_value(p, field) != shown]
    return f"default: {show(shown)}" + (f" ({', '.join(others)})" if others else "")


def _add_dataclass_flags(parser, cls, group_title):
    group = parser.add_argument_group(group_title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in _SKIP:
            continue
        kind = hints[f.name]
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        if base not in (bool, int, float, str):
            continue  # lists, dicts: not a single flag
        described = f.metadata.get("help") or _HELP.get(f.name, "")
        text = f"{described}; {_default_help(f)}" if described else _default_help(f)
        text = text.replace("%", "%%")
        if base is bool:
            group.add_argument(flag_name(f.name), dest=f.name, default=None, help=text,
                               action=argparse.BooleanOptionalAction)
        elif f.name in _CHOICES:
            group.add_argument(flag_name(f.name), dest=f.name, default=None, help=text,
                               choices=_CHOICES[f.name])
        else:
            metavar = "{" + ",".join(DTYPES) + "}" if f.name == "dtype" else base.__name__.upper()
            group.add_argument(flag_name(f.name), dest=f.name, type=base, default=None,
                               metavar=metavar, help=text)


def register(subparsers):
    p = subparsers.add_parser(
        "train", help="train a tokenizer and a GPT (default: on the built-in corpus)",
        description="Train a GPT. With no arguments: the 'small' preset on CPython's built-in "
                    "documentation, about five minutes on a 2-core CPU. Defaults shown are the "
                    "'small' preset's (other presets' values in brackets).")
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                   help="model size and schedule to start from (default: small)")
    p.add_argument("--resume", metavar="RUN", help="continue the run saved in RUN")
    p.add_argument("--out", dest="out_dir", default=None, metavar="RUN",
                   help="run folder to write (default: runs/tinyllm, or the first free "
                        "runs/tinyllm-N)")
    p.add_argument("--out-dir", dest="out_dir", help=argparse.SUPPRESS)  # old name of --out
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)
    _add_dataclass_flags(p, GPTConfig, "model")
    _add_dataclass_flags(p, TrainConfig, "training")
    from tinyllm.distributed import add_flags  # imports no MPI

    add_flags(p)
    p.set_defaults(func=run_train)

    s = subparsers.add_parser(
        "sample", help="generate text from a trained run",
        description="Continue a prompt with a trained model, printing tokens as they come. "
                    "Sampling stops at --max-new-tokens or at the end-of-text token.")
    s.add_argument("run_dir", metavar="RUN", help="a run folder written by tinyllm train")
    s.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    s.add_argument("--max-new-tokens", type=int, default=200, metavar="N",
                   help="most tokens to generate (default: 200)")
    s.add_argument("--temperature", type=float, default=0.8, metavar="T",
                   help="divide the logits by T: lower is safer, 0 is greedy (default: 0.8)")
    s.add_argument("--top-k", type=int, default=40, metavar="K",
                   help="sample among the K most likely tokens (default: 40)")
    s.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="sample among the most likely tokens whose probabilities add up to P, "
                        "in (0, 1] (default: off)")
    s.add_argument("--seed", type=int, default=None,
                   help="seed for repeatable samples (default: a fresh one each time)")
    s.add_argument("--num-samples", type=int, default=1, metavar="N",
                   help="how many samples to print (default: 1)")
    s.set_defaults(func=run_sample)

    q = subparsers.add_parser(
        "plot", help="draw a run's loss curves into RUN/loss.png",
        description="Draw train and validation loss against step from RUN/metrics.jsonl "
                    "(needs matplotlib: pip install '.[plot]').")
    q.add_argument("run_dir", metavar="RUN", help="a run folder written by tinyllm train")
    q.add_argument("--out", default=None, metavar="PNG", help="image to write (default: RUN/loss.png)")
    q.set_defaults(func=run_plot)


def config_from_args(args) -> TrainConfig:
    model_over, train_over = PRESETS[args.preset]
    model = {} if args.init_from else dict(model_over)  # --init-from: the run's model
    train = dict(train_over)
    for f in dataclasses.fields(GPTConfig):
        if getattr(args, f.name, None) is not None:
            model[f.name] = getattr(args, f.name)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in _SKIP and getattr(args, f.name, None) is not None:
            train[f.name] = getattr(args, f.name)
    if args.out_dir is not None:
        train["out_dir"] = args.out_dir
    if args.max_steps is not None and args.max_minutes is None:
        train["max_minutes"] = None  # an explicit step count wins over the preset's time budget
    if args.quiet:
        train["progress"] = False
    return TrainConfig(**train, model=model)


def run_train(args) -> int:
    from tinyllm import distributed

    # Under mpiexec: one rank of a data-parallel job; an error on any rank ends them all.
    comm = distributed.connect(args.distributed, args.device or "cpu")
    with distributed.guard(comm):
        return _train(args, comm)


def _train(args, comm) -> int:
    from tinyllm.distributed import setup
    from tinyllm.train import Trainer, TrainingDiverged

    if args.resume:
        from tinyllm.train import read_run_config, resume_config

        given = {f.name: getattr(args, f.name) for cls in (GPTConfig, TrainConfig)
                 for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
        if args.quiet:
            given["progress"] = False
        cfg = resume_config(args.resume, given)  # refuses flags a resume can't honour
        check_train(cfg, read_run_config(args.resume)["model"], trains_tokenizer=False)
    else:
        cfg = config_from_args(args)
        check_train(cfg, cfg.model, trains_tokenizer=cfg.tokenizer is None)
    trainer = setup(comm, Trainer, cfg, resume=bool(args.resume), bucket_mb=args.bucket_mb,
                    overlap=args.overlap, zero=args.zero)
    try:
        summary = trainer.run()
    except TrainingDiverged as err:
        if comm.is_root:
            print(f"tinyllm train: {err}", file=sys.stderr)
        return 1
    if summary is None:  # not rank 0: rank 0 reports
        return 0
    print(json.dumps(summary, indent=2))
    print(f"saved to {summary['run_dir']}  (sample: tinyllm sample {summary['run_dir']})",
          file=sys.stderr)
    return 0


def run_sample(args) -> int:
    import numpy as np

    import tinyllm

    check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                   names={"max_new_tokens": "--max-new-tokens", "temperature": "--temperature",
                          "top_k": "--top-k", "top_p": "--top-p"})
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {args.num_samples}")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be at least 0, got {args.seed}")
    model, tok = tinyllm.load(args.run_dir)
    ids = tok.encode(args.prompt, allowed_special="all")
    if not ids:
        raise ValueError("the prompt encodes to no tokens; give at least one character")
    stops = list(tok.special_tokens.values())
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        stream = model.stream(np.asarray([ids]), args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=seed, stop_tokens=stops)
        sys.stdout.write(args.prompt)
        produced = []
        for column in stream:  # print as the tokens come; decode whole to keep UTF-8 intact
            token = int(column[0])
            if token in stops:  # the end-of-text token ends the sample; it is not text
                break
            produced.append(token)
            text = tok.decode(produced)
            if not text.endswith("\ufffd"):
                sys.stdout.write(text)
                sys.stdout.flush()
                produced = []
        sys.stdout.write(tok.decode(produced) + "\n")
        if i + 1 < args.num_samples:
            sys.stdout.write("-" * 40 + "\n")
    return 0


def run_plot(args) -> int:
    from pathlib import Path

    from tinyllm.plot import plot_losses

    metrics = Path(args.run_dir) / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics}: missing (is {args.run_dir} a run folder?)")
    out = plot_losses(metrics, args.out or Path(args.run_dir) / "loss.png", strict=True)
    print(f"wrote {out}", file=sys.stderr)
    return 0
