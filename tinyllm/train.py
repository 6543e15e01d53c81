"""Pre-training: the loop that turns a corpus into a GPT.

    data   -> tokenizer + train.bin / val.bin (tinyllm.data.prepare), loaded by BatchLoader
    model  -> GPT(config); AdamW with decay on 2-D weights only; warmup + cosine learning rate
    loop   -> forward, backward (accumulated over `grad_accum` micro-batches), clip, step
    every `eval_interval` steps -> validation loss, perplexity, bits per byte, a sample,
                                   a checkpoint (see checkpoint.py)

Everything a step depends on (weights, optimizer moments, the data position, every random
generator, the step count and the planned number of steps) is saved, so a run stopped at step k
and resumed reaches exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

import autograd as ag
from autograd import optim
from autograd.backend import asnumpy
from tinyllm import checkpoint as ckpt
from tinyllm.model import GPT, GPTConfig


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
    progress: bool = True
    model: dict = field(default_factory=dict)  # GPTConfig fields

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS = {
    # name: (GPTConfig overrides, TrainConfig overrides)
    "tiny": (dict(vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=64),
             dict(batch_size=16, max_steps=300, lr=3e-3, eval_interval=100)),
    # Tuned on the built-in corpus for quality in five minutes on 2 cores (2.5-minute runs:
    # vocab 1024 / lr 2e-3: 1.92 bits per byte; vocab 2048 / lr 3e-3 / dropout 0.1: 1.90).
    # The corpus is small (~150k tokens), so five minutes is many epochs: dropout pays off.
    "small": (dict(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.1),
              dict(batch_size=16, max_steps=5000, max_minutes=4.5, lr=3e-3, eval_interval=250)),
    "medium": (dict(vocab_size=4096, block_size=256, n_layer=6, n_head=6, n_embd=384),
               dict(batch_size=8, max_steps=5000, lr=6e-4, min_lr=6e-5, eval_interval=250)),
}


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN or infinite (or exploded) at a named step."""


class RunFolderError(ValueError):
    """A run folder that can't be used as asked: an earlier run would be mixed or replaced, or
    its prepared data no longer matches its configuration."""


DEFAULT_OUT = "runs/tinyllm"


def new_run_dir(out_dir: str | None, log) -> Path:
    """The folder for a new (not resumed) run. An earlier run is never replaced or mixed in:
    with no `--out` the first free one of runs/tinyllm, runs/tinyllm-2, runs/tinyllm-3, ... is
    taken (and named), so the README's commands can run one after another; an `--out` that was
    given explicitly and already holds something is refused."""
    if out_dir is None:
        base = Path(DEFAULT_OUT)
        candidate, n = base, 1
        while _occupied(candidate):
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        if candidate != base:
            log(f"{base} holds an earlier run; this run goes to {candidate} "
                f"(continue that one with --resume {base})")
        return candidate
    folder = Path(out_dir)
    if _occupied(folder):
        what = "a run" if (folder / "config.json").exists() else "files"
        raise RunFolderError(
            f"{folder} already holds {what}; a new run never replaces or mixes with it. Pass "
            f"--resume {folder} to continue it, or --out NEW_FOLDER for a new run (or delete it)")
    return folder


def _occupied(folder: Path) -> bool:
    return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))


def load_data(cfg: TrainConfig, vocab_size: int, run_dir: Path, log, resume: bool = False):
    """(tokenizer, train tokens, val tokens, test tokens or None) for `cfg.data`: a prepared
    folder used as it is, or text prepared into RUN/data. RUN/data is reused only when its
    recorded provenance (sources, vocabulary size or tokenizer, cleaning) matches `cfg`;
    otherwise a new run prepares it again, and a resume refuses (its data would change under
    it). Folders prepared before the test split existed have no test.bin: test is then None."""
    from tinyllm.data.prepare import prepare
    from tinyllm.data.prepared import check_prepared, load_prepared, provenance, tokenizer_sha256

    src = Path(cfg.data)
    if src.is_dir() and (src / "meta.json").exists():  # a folder made by `tinyllm prepare`
        data = load_prepared(src)
        if cfg.tokenizer and tokenizer_sha256(cfg.tokenizer) != tokenizer_sha256(data.tokenizer):
            raise RunFolderError(f"--tokenizer {cfg.tokenizer} is not the tokenizer {src} was "
                                 "prepared with; prepare the data with it, or leave it out")
    else:
        folder = run_dir / "data"
        differences = check_prepared(folder, provenance([cfg.data], vocab_size, cfg.tokenizer))
        if differences and resume and (folder / "meta.json").exists():
            raise RunFolderError(
                f"cannot resume {run_dir}: its prepared data {folder} no longer matches the run's "
                f"configuration ({'; '.join(differences)}); start a new run instead")
        if differences:
            if folder.exists():
                log(f"not reusing {folder}: {'; '.join(differences)}")
            log(f"preparing {cfg.data} (vocab {vocab_size}) into {folder}")
            prepare(cfg.data, folder, tokenizer=cfg.tokenizer, vocab_size=vocab_size,
                    progress=cfg.progress)
        data = load_prepared(folder)
    test = data.test if len(data.test) else None
    return data.tokenizer, data.train, data.val, test


def param_groups(model, weight_decay):
    """Decay the 2-D weights (matrices, embeddings); never biases or norm gains."""
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """One training run. `Trainer(cfg).run()` trains; `resume=True` continues a run dir."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, log=None):
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if resume:
            self.run_dir = Path(cfg.out_dir or DEFAULT_OUT)
            self._setup(cfg, resume)
            return
        self.run_dir = new_run_dir(cfg.out_dir, self.log)
        created = not self.run_dir.exists()
        try:
            self._setup(replace(cfg, out_dir=str(self.run_dir)), resume)
        except BaseException:
            # A run that failed before it began (bad data, Ctrl-C while preparing) leaves no
            # folder behind that would block the same command next time.
            if created and not (self.run_dir / "config.json").exists():
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _setup(self, cfg, resume):
        self.cfg = cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.device != "cpu":
            ag.set_default_device(cfg.device)
        if resume:
            saved = ckpt.read_json(self.run_dir / "config.json")
            self.model_cfg = GPTConfig.from_dict(saved["model"])
        elif cfg.init_from:  # continued pre-training: the run's architecture and tokenizer
            from tinyllm import init_from

            self.model_cfg, cfg.tokenizer = init_from.init_config(cfg)
        else:
            self.model_cfg = GPTConfig(**cfg.model)
        self.tok, train, val, test = load_data(cfg, self.model_cfg.vocab_size, self.run_dir,
                                               self.log, resume=resume)
        if cfg.init_from and not resume:
            init_from.check_same_tokenizer(self.tok, cfg)
        if self.tok.vocab_size != self.model_cfg.vocab_size:
            self.model_cfg = GPTConfig(**{**self.model_cfg.to_dict(),
                                          "vocab_size": self.tok.vocab_size})
        from tinyllm.data.dataset import BatchLoader

        T = self.model_cfg.block_size
        self.train_loader = BatchLoader(train, cfg.batch_size, T, seed=cfg.seed)
        # What evaluation scores, and under which name: "val" normally; "train_eval" when there
        # is no validation split, so that nobody mistakes a training loss for a held-out one.
        self.eval_split, self.eval_data = "val", val
        if len(val) < 2:
            self.log(f"warning: the validation split has {len(val)} tokens: evaluating on the "
                     "training split instead (reported as train_eval_*, not val_*)")
            self.eval_split, self.eval_data = "train_eval", train
        elif len(val) <= T:
            self.log(f"warning: the validation split has only {len(val)} tokens (less than one "
                     f"window of {T}); its numbers will be noisy")
        self.test_tokens = test if test is not None and len(test) >= 2 else None
        self.model = GPT(self.model_cfg, seed=cfg.seed)
        if cfg.init_from and not resume:
            init_from.load_init_weights(self.model, cfg)
        self.optimizer = optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                     betas=(cfg.beta1, cfg.beta2))
        self.step = 0
        self._phase = None  # where in a step we are: None (between steps), compute, update...
        self.planned_steps = None if cfg.max_minutes else cfg.max_steps
        self.train_tokens = 0
        self.skipped = 0
        self.train_seconds = 0.0
        if resume:
            self._restore()
        else:
            # A checkpoint of step 0 first, then config.json (the mark of a run): a run killed
            # at any moment after it has a name can be resumed.
            (self.run_dir / "metrics.jsonl").write_text("")
            self.tok.save(self.run_dir / "tokenizer.json")
            self.save()
            ckpt.write_json(self.run_dir / "config.json",
                            {"model": self.model_cfg.to_dict(), "train": asdict(cfg)})

    # ---- state --------------------------------------------------------------------------------
    def _state(self):
        return {"step": self.step, "planned_steps": self.planned_steps,
                "train_tokens": self.train_tokens, "skipped": self.skipped,
                "train_seconds": self.train_seconds, "loader": self.train_loader.state_dict(),
                "model_rng": ckpt.rng_state(self.model.rng)}

    def _restore(self):
        state = ckpt.load_checkpoint(self.run_dir, self.model, self.optimizer)
        self.step, self.planned_steps = state["step"], state["planned_steps"]
        self.train_tokens, self.skipped = state["train_tokens"], state["skipped"]
        self.train_seconds = state["train_seconds"]
        self.train_loader.load_state_dict(state["loader"])
        ckpt.set_rng_state(self.model.rng, state["model_rng"])
        self._truncate_metrics()
        if self.cfg.max_minutes is None:  # a step count given now (e.g. a longer run) wins
            self.planned_steps = self.cfg.max_steps
        self.log(f"resumed {self.run_dir} at step {self.step}")

    def _truncate_metrics(self):
        """Drop the metrics a killed run logged after its checkpoint: the resumed run logs
        those steps again, and each step should appear once."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    kept.append(line + "\n")
            except (json.JSONDecodeError, AttributeError):
                pass  # a line cut short by the kill
        text = "".join(kept)
        ckpt.atomic_write(path, lambda f: f.write(text), mode="w")

    def save(self):
        ckpt.save_checkpoint(self.run_dir, self.model, self.optimizer, self._state())

    # ---- one optimisation step -------------------------------------------------------------------
    def lr_at(self, step):
        c = self.cfg
        return optim.schedules.warmup_cosine(step, c.lr, min(c.warmup_steps, self.total_steps()),
                                             self.total_steps(), c.min_lr)

    def total_steps(self):
        return self.planned_steps or self.cfg.max_steps

    def train_step(self):
        """Forward and backward over `grad_accum` micro-batches, clip, update. Returns the loss.

        A step is a transaction (see `_interrupted`): until the update starts it changes only
        the gradients, the data position and the dropout generator, all of which `_boundary`
        records so an interrupted step can be undone; once the update has been applied the
        step's bookkeeping is recomputed from that record, so it is finished exactly once."""
        c = self.cfg
        self._boundary = {"step": self.step, "loader_step": self.train_loader.step,
                          "model_rng": ckpt.rng_state(self.model.rng),
                          "train_tokens": self.train_tokens, "skipped": self.skipped}
        self._phase = "compute"
        self.optimizer.set_lr(self.lr_at(self.step))
        total = 0.0
        for _ in range(c.grad_accum):
            x, y = self.train_loader.next_batch()
            loss = self.model(x, y)[1]  # not keeping the logits: (B, T, V) floats freed now
            if c.grad_accum > 1:
                loss = loss * (1.0 / c.grad_accum)
            loss.backward()
            total += float(asnumpy(loss.data))
        norm = optim.clip_grad_norm(self.model.parameters(), c.grad_clip)
        # Guessing uniformly costs ln(V) nats; three times that means training has blown up.
        exploded = total > 3 * math.log(self.model_cfg.vocab_size)
        skip = exploded or not (math.isfinite(total) and math.isfinite(norm))
        if skip and not c.skip_nonfinite:
            what = "exploded" if exploded and math.isfinite(total) else "is not finite"
            self._undo_step()
            raise TrainingDiverged(
                f"step {self.step}: the loss ({total:.4g}, gradient norm {norm:.4g}) {what}; "
                "lower --lr, or pass --skip-nonfinite to skip such batches")
        self._phase = "update"  # from here the weights change: no way back, only forward
        if not skip:
            self.optimizer.step()
        self._skipped_now = int(skip)
        self._phase = "updated"
        self._finish_step()
        return total

    def _finish_step(self):
        """The bookkeeping after an applied update, computed from the step's start so that
        doing it twice (after an interrupt inside it) changes nothing."""
        b, c = self._boundary, self.cfg
        self.optimizer.zero_grad()
        self.skipped = b["skipped"] + self._skipped_now
        self.train_tokens = (b["train_tokens"]
                             + c.batch_size * c.grad_accum * self.model_cfg.block_size)
        self.step = b["step"] + 1
        self._phase = None

    def _undo_step(self):
        """Back to the state before the step began (its update not yet applied)."""
        b = self._boundary
        self.optimizer.zero_grad()
        self.train_loader.step = b["loader_step"]
        ckpt.set_rng_state(self.model.rng, b["model_rng"])
        self.step, self.train_tokens, self.skipped = b["step"], b["train_tokens"], b["skipped"]
        self._phase = None

    def _interrupted(self):
        """Bring an interrupted step to a step boundary. Returns False when that is impossible:
        the interrupt landed inside `optimizer.step()`, the weights are half updated, and only
        the last checkpoint is consistent (a real Ctrl-C never lands there: `run` defers it)."""
        if self._phase == "compute":
            self._undo_step()
        elif self._phase == "updated":
            self._finish_step()
        return self._phase is None

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, tokens=None, prefix=None):
        """Loss, perplexity and bits per byte of the evaluation split (or of `tokens`), keys
        prefixed `val_` (or `prefix`): the whole split when it has at most `eval_tokens`
        tokens, else the same seeded sample of windows at every evaluation (seed `cfg.seed`).
        `<prefix>tokens` says how many tokens were scored."""
        from tinyllm.evaluate.perplexity import score_tokens

        tokens = self.eval_data if tokens is None else tokens
        prefix = (prefix or self.eval_split) + "_"
        result = score_tokens(self.model, tokens, batch_size=self.cfg.batch_size,
                              max_tokens=self.cfg.eval_tokens, seed=self.cfg.seed,
                              tokenizer=self.tok)
        return result.to_dict(prefix)

    def sample(self, prompt="\n", max_new_tokens=None, seed=0, **sampling):
        ids = self.tok.encode(prompt, allowed_special="all") or [0]
        out = self.model.generate(np.asarray([ids]), max_new_tokens or self.cfg.sample_tokens,
                                  seed=seed, **{"temperature": 0.8, "top_k": 40, **sampling})
        return self.tok.decode(out[0, len(ids):].tolist())

    def _metrics(self, record):
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, stop_at=None):
        """Train to the planned step count; returns the summary (also in summary.json).
        `stop_at` ends early at that step with a checkpoint, as if the run were interrupted
        there (used to test that resuming is exact). Ctrl-C also saves a checkpoint first."""
        from tinyllm.progress import progress_bar

        c = self.cfg
        self.log(f"model: {self.model.num_parameters():,} parameters, "
                 f"{self.model_cfg.n_layer} layers x {self.model_cfg.n_embd} wide, "
                 f"block {self.model_cfg.block_size}, vocab {self.model_cfg.vocab_size}")
        tokens_per_step = c.batch_size * c.grad_accum * self.model_cfg.block_size
        bar = progress_bar(total=self.total_steps(), initial=self.step, enabled=c.progress)
        outer_log = self.log
        if c.progress:
            self.log = bar.write  # messages must not break the bar's line
        start = time.perf_counter() - self.train_seconds
        evals = []
        self._stop_requested = False
        previous_handler = self._defer_ctrl_c()
        try:
            while self.step < self.total_steps():
                if self._stop_requested:  # a Ctrl-C arrived during the last step
                    raise KeyboardInterrupt
                if stop_at is not None and self.step >= stop_at:
                    self.save()
                    return None
                t0 = time.perf_counter()
                loss = self.train_step()
                dt = time.perf_counter() - t0
                self.train_seconds = time.perf_counter() - start
                if c.max_minutes and (self.step in (10, 50) or self.step % c.eval_interval == 0):
                    self._plan_steps()  # re-planned as the measured speed settles
                    bar.total = self.total_steps()
                self._metrics({"step": self.step, "loss": loss, "lr": self.lr_at(self.step - 1),
                               "tokens_per_s": tokens_per_step / dt, "time_s": self.train_seconds})
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}")
                if self.step % c.eval_interval == 0 or self.step == self.total_steps():
                    evals.append(self._eval_and_save())
        except KeyboardInterrupt:
            if self._interrupted():
                self.save()
                self.log(f"\ninterrupted at step {self.step}; checkpoint saved. Continue with: "
                         f"tinyllm train --resume {self.run_dir}")
            else:
                self.log(f"\ninterrupted while applying the update of step {self.step}: the "
                         "weights are half updated, so nothing was saved; the last checkpoint "
                         f"is kept. Continue with: tinyllm train --resume {self.run_dir}")
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            bar.close()
            self.log = outer_log
        wall = time.perf_counter() - start
        last = evals[-1] if evals else self._eval_and_save()
        p = self.eval_split + "_"
        summary = {k: v for k, v in last.items() if k.startswith(p)}
        if self.eval_split != "val":
            summary["evaluated_on"] = ("the training split: the corpus has no validation "
                                       "split, so these numbers are not held-out")
        if self.test_tokens is not None:  # reported once, at the end: never used for tuning
            test = self.evaluate(self.test_tokens, prefix="test")
            self._metrics({"step": self.step, **test})
            self.log(self._describe(test, "test"))
            summary.update(test)
        summary.update({"train_tokens": self.train_tokens, "steps": self.step,
                        "tokens_per_s": self.train_tokens / max(wall, 1e-9), "wall_s": wall,
                        "skipped_batches": self.skipped,
                        "parameters": self.model.num_parameters(), "run_dir": str(self.run_dir)})
        summary = rounded(summary)
        ckpt.write_json(self.run_dir / "summary.json", summary)
        from tinyllm.plot import plot_losses

        plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")
        return summary

    def _defer_ctrl_c(self):
        """Make Ctrl-C stop the run at the end of the current step (checked at the top of the
        loop), so a checkpoint always holds a whole number of steps; a second Ctrl-C stops at
        once. Returns the handler it replaced (None when signals can't be handled here: not
        the main thread)."""
        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            self.log("\nstopping after this step (Ctrl-C again to stop at once)")

        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.signal(signal.SIGINT, handler)

    def _plan_steps(self):
        """Fit the step count to the time budget from the speed so far (evaluations included),
        so the cosine schedule ends at its floor when the time is up."""
        c = self.cfg
        per_step = self.train_seconds / self.step
        budget = c.max_minutes * 60 - self.train_seconds
        planned = max(self.step + 1, min(c.max_steps, self.step + int(budget / per_step)))
        if planned != self.planned_steps:
            self.planned_steps = planned
            self.log(f"planned {planned} steps to fit {c.max_minutes} minutes")

    def _describe(self, metrics, split):
        p = split + "_"
        bpb = metrics[p + "bpb"]
        return (f"step {self.step}: {split.replace('_', ' ')} loss {metrics[p + 'loss']:.3f}, "
                f"ppl {metrics[p + 'ppl']:.1f}"
                + (f", {bpb:.3f} bits/byte" if bpb is not None else "")
                + f" ({metrics[p + 'tokens']:,} tokens{', sampled' if metrics[p + 'sampled'] else ''})")

    def _eval_and_save(self):
        metrics = self.evaluate()
        sample = self.sample()
        record = {"step": self.step, **metrics, "sample": sample}
        self._metrics(record)
        text = self._describe(metrics, self.eval_split) + "\n" + _indent_sample(sample[:200])
        self.log(text)
        self.save()
        return record


def _indent_sample(text):
    """A generated sample as a person reads it: real line breaks, indented under its label."""
    return "  sample: " + text.rstrip().replace("\n", "\n          ")


def rounded(obj, digits=4):
    """Floats to `digits` significant digits (a summary a person reads, not 15-digit noise)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    return obj


def train(cfg: TrainConfig, resume: bool = False):
    """Train (or resume) a run; returns the summary dict."""
    return Trainer(cfg, resume=resume).run()

