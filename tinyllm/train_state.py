"""What makes a pre-training run resumable: the state a checkpoint holds beside the weights and
the optimizer's moments, and what a resume does with it.

Trainer (tinyllm/train.py) takes these methods from `ResumableRun`. A checkpoint's state.json
holds the step, the planned step count, the token and skip counters, the training seconds, the
data loader's position, the dropout generator, the learning-rate schedule's extensions and the
best evaluation so far: with them a run stopped at step k and resumed reaches exactly the
weights of an uninterrupted run. Every field is type-checked on the way in (the file may have
been damaged or edited), and a resume with a new step count extends the cosine schedule from
where it is instead of restarting it.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from tinyllm import checkpoint as ckpt
from tinyllm.run_folder import RunFolderError


class ResumableRun:
    """Checkpoint state of a Trainer: what it saves, restores and records on a resume. Uses
    the Trainer's run_dir, cfg, dist, model, optimizer, train_loader, log, lr_at and
    total_steps."""

    def _state(self):
        return {"step": self.step, "planned_steps": self.planned_steps,
                "train_tokens": self.train_tokens, "skipped": self.skipped,
                "train_seconds": self.train_seconds, "loader": self.train_loader.state_dict(),
                "model_rng": ckpt.rng_state(self.model.rng), "extensions": self.extensions,
                "best": self.best, "evals_since_best": self.evals_since_best}

    def _restore(self):
        try:
            state = ckpt.load_checkpoint(self.run_dir, self.model, self.optimizer)
        except ckpt.CheckpointError as err:
            raise RunFolderError(f"cannot resume: {err}") from None
        try:
            self._load_state(state)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            path = ckpt.checkpoint_dir(self.run_dir) / "state.json"
            raise ckpt.CheckpointError(f"{path}: malformed training state "
                                       f"({type(err).__name__}: {err})") from None
        if self.dist.is_root:
            self._truncate_metrics()
        if self.cfg.max_minutes is None and self.cfg.max_steps != self.total_steps():
            self._extend_schedule(self.cfg.max_steps)
        if self.dist.is_root:
            self._record_resume()
        self.log(f"resumed {self.run_dir} at step {self.step}")

    def _load_state(self, state):
        """Take the counters, schedule, best evaluation, data position and dropout generator
        from a checkpoint's state, checking each type (the file may have been damaged)."""
        def count(key, optional=False):
            value = state.get(key) if optional else state[key]
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key!r} must be a non-negative integer, not {value!r}")
            return value

        self.step, self.planned_steps = count("step"), count("planned_steps", optional=True)
        self.train_tokens, self.skipped = count("train_tokens"), count("skipped")
        self.train_seconds = float(state["train_seconds"])
        self.evals_since_best = count("evals_since_best", optional=True) or 0
        self.extensions = state.get("extensions") or []
        for ext in self.extensions:
            if not (isinstance(ext, dict) and isinstance(ext.get("step"), int)
                    and isinstance(ext.get("lr"), int | float)):
                raise ValueError(f"bad schedule extension {ext!r}")
        self.best = state.get("best")
        if self.best is not None and not (isinstance(self.best, dict) and isinstance(
                self.best.get("loss"), int | float) and isinstance(self.best.get("step"), int)):
            raise ValueError(f"bad best evaluation {self.best!r}")
        if not isinstance(state["loader"], dict) or not isinstance(state["model_rng"], dict):
            raise ValueError("'loader' and 'model_rng' must be objects")
        self.train_loader.load_state_dict(state["loader"])
        ckpt.set_rng_state(self.model.rng, state["model_rng"])

    def _extend_schedule(self, new_total):
        """Train to `new_total` steps instead of the planned count without restarting the
        cosine: from this step the learning rate follows half a cosine from where it is now down
        to min_lr at `new_total` (a finished run, already at min_lr, simply stays there). Steps
        already taken keep the schedule they had, and an unfinished run resumed with its own step
        count is untouched, so its resume stays bit-identical."""
        if self.step == 0:  # nothing trained yet: simply plan the new length
            self.planned_steps = new_total
            return
        lr_now = self.lr_at(self.step)
        if self.extensions:
            self.extensions[-1]["until"] = self.total_steps()  # freeze the superseded segment
        self.extensions.append({"step": self.step, "lr": lr_now, "until": None,
                                "base_total": self.total_steps() if not self.extensions else None})
        self.log(f"extending the run to {new_total} steps: the learning rate goes on from "
                 f"{lr_now:.3g} (step {self.step}) down to {self.cfg.min_lr:.3g}; it does not "
                 "restart the cosine")
        self.planned_steps = new_total

    def _record_resume(self):
        """config.json always holds the configuration in force, plus the history of what each
        resume changed (so a second resume starts from the first one's settings)."""
        path = self.run_dir / "config.json"
        saved = ckpt.read_json(path)
        now = asdict(self.cfg)
        changed = {k: [saved["train"].get(k), v] for k, v in now.items()
                   if k not in ("out_dir", "progress") and saved["train"].get(k) != v}
        if not changed:
            return
        saved.setdefault("resumes", []).append({"step": self.step, "changed": changed})
        saved["train"] = {**now, "out_dir": saved["train"].get("out_dir", str(self.run_dir))}
        ckpt.write_json(path, saved)

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

    def save(self, optimizer_state=None, name="checkpoint"):
        """Write the checkpoint (rank 0). Every rank calls it: under ZeRO-1 the optimizer's
        state is gathered from all of them (`optimizer_state`: one gathered already)."""
        if optimizer_state is None:
            optimizer_state = self.optimizer.state_dict()
        if self.dist.is_root:
            ckpt.save_checkpoint(self.run_dir, self.model, optimizer_state, self._state(),
                                 name=name)
