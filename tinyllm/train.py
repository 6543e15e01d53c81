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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

import autograd as ag
from autograd import optim
from autograd.backend import asnumpy
from tinyllm import checkpoint as ckpt
from tinyllm.checkpoint import CheckpointError
from tinyllm.data.dataset import DataFileError
from tinyllm.model import GPT, GPTConfig
from tinyllm.run_folder import DEFAULT_OUT, RunFolderError, load_data, new_run_dir  # noqa: F401
from tinyllm.train_config import (  # noqa: F401  (also the names users import from here)
    PRESETS,
    RESUMABLE,
    TrainConfig,
    read_run_config,
    resume_config,
)
from tinyllm.train_state import ResumableRun

# The message of the KeyboardInterrupt a deferred Ctrl-C raises: every rank stopped at the same
# step boundary (so tinyllm.distributed ends the job normally instead of aborting it).
STOPPED_AT_BOUNDARY = "stopped at a step boundary"


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN or infinite (or exploded) at a named step."""


def param_groups(model, weight_decay):
    """Decay the 2-D weights (matrices, embeddings); never biases or norm gains."""
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class Trainer(ResumableRun):
    """One training run. `Trainer(cfg).run()` trains; `resume=True` continues a run dir."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, log=None, dist=None):
        from tinyllm.distributed.comm import SingleProcess
        from tinyllm.distributed.gradients import LocalGradients

        # Data-parallel runs (tinyllm.distributed): the communicator, and what averages the
        # gradients over the ranks; only rank 0 writes files. One process: both do nothing.
        self.dist, self.grads = dist or SingleProcess(), LocalGradients()
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if (cfg.shards or 1) > 1 and self.dist.size > 1:  # before any data is prepared
            raise ValueError("shards: over several MPI ranks each rank computes on its own "
                             "core already; leave --shards out (or 1)")
        if resume:
            self.run_dir = Path(cfg.out_dir or DEFAULT_OUT)
            try:
                self._setup(cfg, resume)
            except (CheckpointError, RunFolderError, DataFileError):
                raise  # these name their file already
            except (ValueError, TypeError, KeyError, OverflowError) as err:
                # Every value came from the run's files: say so rather than show a bare error.
                raise CheckpointError(
                    f"cannot resume {self.run_dir}: {type(err).__name__}: {err} (from its "
                    "config.json or checkpoint/state.json, which look damaged)") from None
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
        self.cfg = cfg.check()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.device != "cpu":
            ag.set_default_device(cfg.device)
        if resume:
            self.model_cfg = GPTConfig.from_dict(read_run_config(self.run_dir)["model"])
            ckpt.check_fits(ckpt.checkpoint_dir(self.run_dir), self.model_cfg)  # before sizing
        elif cfg.init_from:  # continued pre-training: the run's architecture and tokenizer
            from tinyllm import init_from

            self.model_cfg, cfg.tokenizer = init_from.init_config(cfg)
        else:
            self.model_cfg = GPTConfig(**cfg.model)
        # The vocabulary size asked for (the tokenizer may stop merging before it: the model
        # then takes the tokenizer's size, which is what config.json's "model" records).
        asked = cfg.model.get("vocab_size", self.model_cfg.vocab_size)
        self.tok, train, val, test = load_data(cfg, asked, self.run_dir, self.log, resume=resume)
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
        self.shards = self._thread_shards()
        self.step = 0
        self._phase = None  # where in a step we are: None (between steps), compute, update...
        self.planned_steps = None if cfg.max_minutes else cfg.max_steps
        self.train_tokens = 0
        self.skipped = 0
        self.train_seconds = 0.0
        self.extensions = []  # learning-rate schedules of resumes that extended the run
        self.best = None  # the best evaluation so far: {"step", "loss"}
        self.evals_since_best = 0
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

    # ---- one optimisation step -------------------------------------------------------------------
    def lr_at(self, step):
        """Warmup and cosine decay over the planned steps; after a resume that extended the run,
        the extension's own decay from the rate it started at (see `_extend_schedule`)."""
        c = self.cfg
        ext = next((e for e in reversed(self.extensions) if step >= e["step"]), None)
        if ext is None:
            total = self.extensions[0]["base_total"] if self.extensions else self.total_steps()
            return optim.schedules.warmup_cosine(step, c.lr, min(c.warmup_steps, total), total,
                                                 c.min_lr)
        until = ext["until"] or self.total_steps()
        progress = min(1.0, (step - ext["step"]) / max(1, until - ext["step"]))
        return c.min_lr + 0.5 * (ext["lr"] - c.min_lr) * (1.0 + math.cos(math.pi * progress))

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
        for micro in range(c.grad_accum):
            self.grads.before_backward(self.step, micro, c.grad_accum)
            x, y = self.train_loader.next_batch()
            if self.shards is not None:
                total += self._sharded_backward(x, y, micro)
                continue
            loss = self.model(x, y, return_logits=False)[1]  # the (B, T, V) logits never held
            if c.grad_accum > 1:
                loss = loss * (1.0 / c.grad_accum)
            loss.backward()
            total += float(asnumpy(loss.data))
        # Over several ranks: the global batch's loss, gradients averaged, the same everywhere.
        total, _ = self.grads.reduce(total, stop=getattr(self, "_stop_requested", False))
        norm = self.grads.clip_(self.model.parameters(), c.grad_clip)
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

    def _thread_shards(self):
        """The ThreadShards that split each micro-batch over threads, or None for one."""
        from autograd.nn.shards import ThreadShards

        n = self.cfg.thread_shards(self.dist.size)
        return ThreadShards(self.model, n, rng=self.model.rng) if n > 1 else None

    def _sharded_backward(self, x, y, micro):
        """Forward and backward of one micro-batch, its rows cut into parts that run at once
        (autograd.nn.shards). Every target of a pre-training batch is scored, so part k's mean
        loss weighted by its share of the rows adds up to the batch's loss, and the gradients
        to its gradient. Part 0 draws its dropout masks from the model's generator; the others
        from generators seeded by (seed, step, micro, part), so a resumed run is exact."""
        n, c = self.shards.n, self.cfg
        parts = [(xs, ys, len(xs) / len(x) / c.grad_accum)
                 for xs, ys in zip(np.array_split(x, n), np.array_split(y, n))]
        self.shards.seed([[c.seed, self.step, micro, k] for k in range(1, n)])
        losses = self.shards.run(
            lambda model, part: model(part[0], part[1], return_logits=False)[1] * part[2], parts)
        return sum(losses)

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
                              tokenizer=self.tok, part=(self.dist.rank, self.dist.size))
        if self.dist.size > 1:  # each rank scored every N-th window: add up the parts
            sums = np.array([result.nats, result.tokens, result.bytes or 0, result.windows],
                            dtype=np.float64)
            self.dist.allreduce_(sums)
            result = replace(result, nats=float(sums[0]), tokens=int(sums[1]),
                             bytes=None if result.bytes is None else int(sums[2]),
                             windows=int(sums[3]))
        return result.to_dict(prefix)

    def sample(self, prompt="\n", max_new_tokens=None, seed=0, **sampling):
        ids = self.tok.encode(prompt, allowed_special="all") or [0]
        out = self.model.generate(np.asarray([ids]), max_new_tokens or self.cfg.sample_tokens,
                                  seed=seed, **{"temperature": 0.8, "top_k": 40, **sampling})
        return self.tok.decode(out[0, len(ids):].tolist())

    def _metrics(self, record):
        if not self.dist.is_root:
            return
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
                 f"block {self.model_cfg.block_size}, vocab {self.model_cfg.vocab_size}; "
                 f"matrix products on {self._matmul_library()}; "
                 f"{self.shards.n if self.shards else 1} thread(s) share each batch")
        tokens_per_step = c.batch_size * c.grad_accum * self.model_cfg.block_size
        bar = progress_bar(total=self.total_steps(), initial=self.step, enabled=c.progress)
        outer_log = self.log
        if c.progress:
            self.log = bar.write  # messages must not break the bar's line
        start = time.perf_counter() - self.train_seconds
        evals = []
        shown = -math.inf  # when the bar's numbers were last updated
        self._stop_requested = False
        previous_handler = self._defer_ctrl_c()
        try:
            while self.step < self.total_steps():
                if self.grads.stop_agreed(self._stop_requested):  # a Ctrl-C during the last step
                    raise KeyboardInterrupt(STOPPED_AT_BOUNDARY)
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
                               "tokens_per_s": tokens_per_step / dt, "time_s": self.train_seconds,
                               "world_size": self.dist.size})
                # The numbers beside the bar change at most twice a second: setting them
                # redraws the bar, and a redraw every step costs time and floods a log.
                if time.perf_counter() - shown >= 0.5:
                    shown = time.perf_counter()
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}")
                bar.update(1)
                if self.step % c.eval_interval == 0 or self.step == self.total_steps():
                    evals.append(self._eval_and_save())
                    if self.dist.bcast(self._early_stop()):  # rank 0 decides for all
                        break
        except KeyboardInterrupt as interrupt:
            alone = str(interrupt) != STOPPED_AT_BOUNDARY  # not a stop all ranks agreed on
            if alone and getattr(self.optimizer, "collective", False):
                # ZeRO-1: saving gathers from every rank, and the others are not saving now.
                self.log(f"\ninterrupted at step {self.step} on this rank alone: nothing saved; "
                         f"the last checkpoint is kept. Continue with: tinyllm train --resume "
                         f"{self.run_dir}")
            elif self._interrupted():
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
        if self.dist.size > 1:
            from tinyllm.distributed import check_identical

            check_identical(self.dist, self.model, f"at the end of step {self.step}")
        last = evals[-1] if evals else self._eval_and_save()  # every rank: it may gather
        # The test split is scored once, at the end (never used for tuning), by every rank.
        test = None if self.test_tokens is None else self.evaluate(self.test_tokens, "test")
        if not self.dist.is_root:
            return None  # rank 0 reports
        p = self.eval_split + "_"
        summary = {k: v for k, v in last.items() if k.startswith(p)}
        if self.eval_split != "val":
            summary["evaluated_on"] = ("the training split: the corpus has no validation "
                                       "split, so these numbers are not held-out")
        if test is not None:
            self._metrics({"step": self.step, **test})
            self.log(self._describe(test, "test"))
            summary.update(test)
        if self.best is not None:
            summary.update({"best_step": self.best["step"], f"best_{p}loss": self.best["loss"],
                            "stopped_early": self.step < self.total_steps()})
        summary.update({"train_tokens": self.train_tokens, "steps": self.step,
                        "tokens_per_s": self.train_tokens / max(wall, 1e-9), "wall_s": wall,
                        "skipped_batches": self.skipped, "world_size": self.dist.size,
                        "parameters": self.model.num_parameters(), "run_dir": str(self.run_dir),
                        "matmul": self._matmul_library(),
                        "shards": self.shards.n if self.shards else 1})
        summary = rounded(summary)
        ckpt.write_json(self.run_dir / "summary.json", summary)
        from tinyllm.plot import plot_losses

        if plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png") is None:
            self.log("loss.png not written: matplotlib is missing (install the plot extra: "
                     'pip install "tinyllm[plot]")')
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

    def _matmul_library(self):
        """What runs the matrix products (speed depends on it): CuPy on a GPU, else MKL when
        the `mkl` extra is installed on an Intel CPU or AUTOGRAD_BLAS=mkl asks for it
        (autograd/blas.py), else NumPy's own BLAS."""
        if self.cfg.device != "cpu":
            return "cupy"
        from autograd import blas

        return blas.library()

    def _plan_steps(self):
        """Fit the step count to the time budget from the speed so far (evaluations included),
        so the cosine schedule ends at its floor when the time is up."""
        c = self.cfg
        per_step = self.train_seconds / self.step
        budget = c.max_minutes * 60 - self.train_seconds
        planned = max(self.step + 1, min(c.max_steps, self.step + int(budget / per_step)))
        planned = self.dist.bcast(planned)  # every rank must take the same number of steps
        if self.planned_steps is None:  # said once; later re-plans only move the bar's end
            self.log(f"planned {planned} steps to fit {c.max_minutes} minutes (re-planned as "
                     "the measured speed settles)")
        self.planned_steps = planned

    def _describe(self, metrics, split):
        p = split + "_"
        bpb = metrics[p + "bpb"]
        return (f"step {self.step}: {split.replace('_', ' ')} loss {metrics[p + 'loss']:.3f}, "
                f"ppl {metrics[p + 'ppl']:.1f}"
                + (f", {bpb:.3f} bits/byte" if bpb is not None else "")
                + f" ({metrics[p + 'tokens']:,} tokens{', sampled' if metrics[p + 'sampled'] else ''})")

    def _eval_and_save(self):
        """Evaluate, print, checkpoint; a new best evaluation also goes to checkpoint-best/
        (written before checkpoint/, so a crash between the two leaves a state that, resumed,
        writes the same best again)."""
        optimizer_state = self.optimizer.state_dict()  # every rank: ZeRO-1 gathers it
        metrics = self.evaluate()  # every rank scores its share of the windows
        if not self.dist.is_root:
            return None  # rank 0 alone samples, reports and saves
        sample = self.sample()
        record = {"step": self.step, **metrics, "sample": sample}
        self._metrics(record)
        text = self._describe(metrics, self.eval_split) + "\n" + _indent_sample(sample[:200])
        self.log(text)
        loss = metrics[self.eval_split + "_loss"]
        if self.best is None or loss < self.best["loss"]:
            self.best, self.evals_since_best = {"step": self.step, "loss": loss}, 0
            self.save(optimizer_state, name="checkpoint-best")
        else:
            self.evals_since_best += 1
        self.save(optimizer_state)
        return record

    def _early_stop(self):
        """True when `early_stop` evaluations in a row have not beaten the best loss."""
        n = self.cfg.early_stop
        if not n or self.evals_since_best < n:
            return False
        self.log(f"stopping early at step {self.step}: no better {self.eval_split} loss in {n} "
                 f"evaluations (best {self.best['loss']:.4f} at step {self.best['step']}, "
                 "in checkpoint-best/)")
        return True


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

