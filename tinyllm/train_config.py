"""The settings of a training run: `TrainConfig`, the presets, and reading them back.

`TrainConfig` holds everything about a run except the model's shape (that is GPTConfig, kept in
its `model` field as a dict). A run folder's config.json records both; `read_run_config` reads
it back with every type checked, and `resume_config` says which settings a resume may change
(how long it runs and what it reports, never what the steps taken so far depended on).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from tinyllm import checkpoint as ckpt
from tinyllm.model import GPTConfig
from tinyllm.run_folder import RunFolderError


@dataclass
class TrainConfig:
    out_dir: str | None = None  # None: runs/tinyllm, or the first free runs/tinyllm-N
    data: str = "builtin:pydoc"  # a prepared folder, files or folders of text, or builtin:NAME
    tokenizer: str | None = None  # a saved tokenizer; None trains one with `vocab_size`
    init_from: str | None = None  # start from this run's weights and tokenizer (init_from.py)
    batch_size: int = 16
    grad_accum: int = 1
    max_steps: int = 2000
    max_minutes: float | None = None  # plan the step count to fit this wall-clock budget
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_tokens: int | None = 65536  # score the whole split up to this many tokens, else a
    #                                   seeded sample of windows this large (None: always whole)
    sample_tokens: int = 80
    seed: int = 0
    device: str = "cpu"
    skip_nonfinite: bool = False  # skip a batch whose loss or gradient is NaN/inf or exploded
    early_stop: int | None = field(default=None, metadata={
        "help": "stop after N evaluations without a better validation loss (the best is kept "
                "in checkpoint-best/)"})
    shards: int | None = field(default=None, metadata={
        "help": "cut each micro-batch into N parts whose forward and backward run at once on "
                "N threads (default: 2 on a CPU with 2 or more cores, else 1)"})
    progress: bool = True
    model: dict = field(default_factory=dict)  # GPTConfig fields

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def check(self):
        """Raise ValueError naming the first setting that no run can use."""
        def bad(name, rule):
            raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        for name in ("batch_size", "grad_accum", "max_steps", "eval_interval"):
            if getattr(self, name) < 1:
                bad(name, "at least 1")
        for name in ("warmup_steps", "sample_tokens", "seed"):
            if getattr(self, name) < 0:
                bad(name, "0 or more")
        for name in ("eval_tokens", "early_stop", "shards"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                bad(name, "at least 1 (or left out)")
        for name in ("lr", "min_lr", "weight_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                bad(name, "a finite number, 0 or more")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, "in [0, 1)")
        if not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            bad("grad_clip", "a finite number above 0")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes)
                                                 and self.max_minutes > 0):
            bad("max_minutes", "a finite number above 0 (or left out)")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            bad("device", "'cpu' or 'cuda' (or 'cuda:N')")
        if self.shards is not None and self.shards > self.batch_size:
            bad("shards", f"at most batch_size ({self.batch_size}): each part needs a sequence")
        return self

    def thread_shards(self, world_size=1) -> int:
        """How many threads share each micro-batch (autograd.nn.shards): `shards` when set;
        else 2 on a CPU with 2 or more cores (measured on 2 cores, where two processes of
        one thread had beaten one of two by 1.33x), and 1 on a GPU or under MPI (whose ranks
        already share the cores)."""
        if self.shards is not None:
            return self.shards
        from autograd.parallel import cpu_threads

        if self.device != "cpu" or world_size > 1:
            return 1
        return max(1, min(2, cpu_threads(), self.batch_size))


PRESETS = {
    # name: (GPTConfig overrides, TrainConfig overrides)
    "tiny": (dict(vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=64),
             dict(batch_size=16, max_steps=300, lr=3e-3, eval_interval=100)),
    # Tuned on the built-in corpus for quality in five minutes on 2 cores (2.5-minute runs:
    # vocab 1024 / lr 2e-3: 1.92 bits per byte; vocab 2048 / lr 3e-3 / dropout 0.1: 1.90).
    # The corpus is small (~150k tokens), so five minutes is many epochs: with dropout 0.1 the
    # full 4.5-minute run was best at step 750 of ~1,900 (1.856) and ended at 1.875 (test
    # 1.821); with 0.2 it improved to its last step (1.798, test 1.766). Once batch shards made
    # the step ~1.25x faster, 4 layers plateaued at ~1.80 by step 2,000 of ~2,600, so the
    # preset spends the speed on depth. Full runs, val / test bits per byte: 4 layers with
    # dropout 0.2 1.806 and 1.800 (val, two runs), 0.25 1.793 / 1.767, 0.3 1.794 / 1.780;
    # 192 wide (6 heads), 0.25: 1.784 / 1.784; 6 layers, 0.25: 1.779 / 1.766, still improving.
    "small": (dict(vocab_size=2048, block_size=128, n_layer=6, n_head=4, n_embd=128, dropout=0.25),
              dict(batch_size=16, max_steps=5000, max_minutes=4.5, lr=3e-3, eval_interval=250)),
    "medium": (dict(vocab_size=4096, block_size=256, n_layer=6, n_head=6, n_embd=384),
               dict(batch_size=8, max_steps=5000, lr=6e-4, min_lr=6e-5, eval_interval=250)),
}


def _check_types(cls, values: dict, where: str) -> dict:
    """`values` with each known field of dataclass `cls` of its declared type (an int is a
    float too; None only where the type allows it), else ValueError naming field and `where`."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name not in hints:
            continue
        allowed = typing.get_args(hints[name]) or (hints[name],)
        ok = any(value is None if t is type(None)
                 else isinstance(value, int | float) and not isinstance(value, bool)
                 if t is float
                 else isinstance(value, t) and not (t is int and isinstance(value, bool))
                 for t in allowed)
        if not ok:
            raise ValueError(f"{where}: {name} = {value!r} is not of type {hints[name]}")
    return values


def read_run_config(run_dir) -> dict:
    """config.json of a run, checked: {"model": GPTConfig fields, "train": TrainConfig fields,
    ...}. Anything missing, of the wrong type or unknown to GPTConfig is a CheckpointError
    naming the file; nothing in it is executed or trusted blindly."""
    path = Path(run_dir) / "config.json"
    saved = ckpt.read_json(path)
    try:
        if not isinstance(saved.get("model"), dict) or not isinstance(saved.get("train"), dict):
            raise ValueError('needs "model" and "train" objects')
        _check_types(GPTConfig, saved["model"], "model")
        _check_types(TrainConfig, saved["train"], "train")
        if not isinstance(saved["train"].get("model", {}), dict):
            raise ValueError('"train" "model" must be an object')
        TrainConfig.from_dict(saved["train"]).check()
        model = GPTConfig.from_dict(saved["model"])  # its own checks of values and fields
        if not 0 <= model.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {model.dropout!r}")
    except (ValueError, TypeError) as err:
        raise ckpt.CheckpointError(f"{path}: {err}") from None
    return saved


# What a resume may change: how long the run goes on and what it reports and saves, never
# anything the steps already taken depend on (model, data, batch shape, optimizer, seed).
RESUMABLE = ("max_steps", "max_minutes", "eval_interval", "eval_tokens", "sample_tokens",
             "skip_nonfinite", "early_stop", "progress", "device", "shards")


def resume_config(run_dir, given: dict) -> TrainConfig:
    """The configuration to resume `run_dir` with: the saved one, changed by the settings in
    `given` ({field name: value}, TrainConfig or GPTConfig fields, e.g. the flags typed) that
    a resume can honour (`RESUMABLE`). Any other setting that differs from the run's is refused
    by name, never silently ignored. A new --max-steps without --max-minutes drops the time
    budget (the step count wins) and extends or shortens the run (see `Trainer._extend_schedule`)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RunFolderError(f"{run_dir}: not a run directory (no config.json)")
    saved = read_run_config(run_dir)
    cfg = TrainConfig.from_dict({**saved["train"], "out_dir": str(run_dir)})
    # Model settings as asked (the vocabulary size asked for, not what the tokenizer reached)
    model = {**saved.get("model", {}), **saved["train"].get("model", {})}
    refused = []
    for name, value in given.items():
        if name in RESUMABLE or (name == "out_dir" and Path(value) == run_dir):
            continue
        old = model.get(name) if name in model else getattr(cfg, name, None)
        if value != old:
            refused.append(f"--{name.replace('_', '-')} {value} (the run has {old})")
    if refused:
        raise RunFolderError(
            f"--resume {run_dir} continues the run as it was configured and cannot change "
            f"{', '.join(refused)}; drop these flags, or start a new run with them (--out NEW)")
    updates = {k: v for k, v in given.items() if k in RESUMABLE}
    if "max_steps" in updates and "max_minutes" not in updates:
        updates["max_minutes"] = None
    return replace(cfg, **updates)
