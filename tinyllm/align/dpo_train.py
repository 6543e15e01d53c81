"""`tinyllm dpo`: the run that aligns a fine-tuned GPT to preference pairs.

    BASE_RUN (usually an SFT run) -> the policy, and the frozen reference it starts as
    reference log-probs of every pair: computed once, before training, and cached
    loop: a batch of pairs -> both sides in one forward -> DPO loss -> backward -> AdamW
    every `eval_interval` steps: loss, reward accuracy, margin, chosen and rejected rewards
                                 on the held-out pairs, and a checkpoint
    at the start and the end:    the preferred rate, the share of held-out prompts whose
                                 greedy reply is the chosen one (the behaviour, not the score)

`sft_weight` > 0 adds the chosen replies' NLL to the loss (see `dpo.chosen_nll`): on the tiny
model plain DPO wins its metric by making both replies unlikely, and greedy replies degrade.

The run folder has the shape of every other run (config.json, tokenizer.json, checkpoint/,
metrics.jsonl, summary.json, dpo.png) plus `reference.safetensors` (the cached log-probs). Its
checkpoint holds plain GPT weights, so `tinyllm sample` / `chat` read it like any run.

With LoRA (`lora` set) only the adapters train; the reference is the same model with its
adapters disabled (`autograd.nn.disable_adapters`), so no second copy of the weights is kept.
The adapters are also saved alone (`adapter.safetensors`, with the base's weight hash).
Resuming (`resume=True`) restores weights, optimizer, data order and step, so a stopped run
ends where an uninterrupted one does.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import autograd as ag
from autograd import nn, optim
from autograd.backend import asnumpy
from tinyllm import checkpoint as ckpt
from tinyllm.align import lora as lora_mod
from tinyllm.align import lora_runs
from tinyllm.align.dpo import chosen_nll, dpo_loss, pair_logprobs, reference_logprobs, reward_metrics
from tinyllm.align.preference_data import load_pairs, preferred, split_pairs, tokenize_pairs
from tinyllm.align.sft import load_run
from tinyllm.align.template import END_TOKEN


@dataclass
class DPOConfig:
    base_run: str = ""
    data: str = "builtin:brackets"
    out_dir: str = "runs/dpo"
    beta: float = 0.1
    sft_weight: float = 0.0  # > 0 adds that times the chosen replies' NLL per token (RPO)
    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    batch_size: int = 8
    max_steps: int = 200
    eval_interval: int = 50
    train_pairs: int | None = 2000  # built-in sets: how many pairs to draw (files: all)
    test_pairs: int | None = 200
    sample_pairs: int = 100  # held-out prompts answered greedily at the start and the end
    sample_tokens: int = 24  # longest greedy reply
    seed: int = 0
    progress: bool = True
    lora: dict | None = None  # a LoRAConfig as a dict, or None for full fine-tuning

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class _PairOrder:
    """Shuffled pair indices over epochs; `state_dict` makes the order resumable."""

    def __init__(self, n, seed):
        self.n, self.rng = n, np.random.default_rng(seed)
        self.epoch, self.pos, self.order = 0, 0, self.rng.permutation(n)

    def take(self, k):
        out = []
        for _ in range(k):
            if self.pos == self.n:
                self.epoch, self.pos, self.order = self.epoch + 1, 0, self.rng.permutation(self.n)
            out.append(int(self.order[self.pos]))
            self.pos += 1
        return out

    def state_dict(self):
        return {"epoch": self.epoch, "pos": self.pos, "order": self.order.tolist(),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, s):
        self.epoch, self.pos, self.order = s["epoch"], s["pos"], np.asarray(s["order"])
        self.rng.bit_generator.state = s["rng"]


class DPOTrainer:
    """One DPO run: `DPOTrainer(cfg).run()`; `resume=True` continues `cfg.out_dir`."""

    def __init__(self, cfg: DPOConfig, resume=False, log=None):
        from tinyllm.align.vocab import prepare_chat_vocab

        self.cfg, self.run_dir = cfg, Path(cfg.out_dir)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        saved = ckpt.read_json(self.run_dir / "config.json") if resume else None
        model, tok, _ = load_run(cfg.base_run)
        tok, added = prepare_chat_vocab(tok, model)
        self.base_hash = lora_mod.weights_hash(model.state_dict())  # before any adapter
        if saved and saved["base_hash"] != self.base_hash:
            raise ValueError(f"{cfg.base_run}: its weights changed since {self.run_dir} started "
                             "(the weight hash differs); cannot resume")
        self.model, self.tok = model, tok
        self.lora_cfg = None
        if cfg.lora is not None:
            self.lora_cfg = lora_mod.LoRAConfig.from_dict({**cfg.lora, "new_token_rows": added})
            cfg.lora = self.lora_cfg.to_dict()
            self.report = lora_mod.apply_lora(model, self.lora_cfg)
        else:
            self.report = lora_mod.parameter_report(model, [])
        self.model.eval()  # dropout off: at step 0 the policy must equal the reference
        for _, layer in nn.lora_layers(model):
            layer.training = True  # LoRA's own dropout stays (it adds exactly 0 at step 0)
        self.end_id = tok.special_tokens[END_TOKEN]
        self._load_data()
        self.optimizer = optim.AdamW(lora_mod.trainable_parameters(model), lr=cfg.lr,
                                     betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
        self.order = _PairOrder(len(self.train), cfg.seed)
        self.step, self.train_seconds = 0, 0.0
        if resume:
            self._restore()
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.write_json(self.run_dir / "config.json",
                            {"model": model.config.to_dict(), "dpo": asdict(cfg),
                             "base_run": str(cfg.base_run), "base_hash": self.base_hash,
                             "lora": cfg.lora, "data_report": self.data_report})
            tok.save(self.run_dir / "tokenizer.json")
            (self.run_dir / "metrics.jsonl").write_text("")
            self._cache_reference()

    # ---- data and the reference ------------------------------------------------------------
    def _load_data(self):
        c = self.cfg
        if str(c.data).startswith("builtin:"):
            train = load_pairs(c.data, "train", c.train_pairs, c.seed)
            test = load_pairs(c.data, "test", c.test_pairs, c.seed)
        else:
            train, test = split_pairs(load_pairs(c.data), seed=c.seed)
        T = self.model.config.block_size
        self.train, _, rep_train = tokenize_pairs(train, self.tok, T)
        self.test, self.test_pairs, rep_test = tokenize_pairs(test, self.tok, T)
        if not self.train or not self.test:
            raise ValueError(f"{c.data}: no pair fits the block size {T} "
                             f"(train: {rep_train}; test: {rep_test})")
        self.data_report = {"train": rep_train.to_dict(), "test": rep_test.to_dict()}
        self.log(f"pairs: train {rep_train}; test {rep_test}")

    def _cache_reference(self):
        """Log-probs of every pair under the starting model (adapters disabled), saved once."""
        from tinyllm.safetensors import save_file

        with nn.disable_adapters(self.model):
            tc, tr = reference_logprobs(self.model, self.train, self.end_id, self.cfg.batch_size)
            ec, er = reference_logprobs(self.model, self.test, self.end_id, self.cfg.batch_size)
        self.ref = {"train_chosen": tc, "train_rejected": tr, "test_chosen": ec,
                    "test_rejected": er}
        save_file(self.ref, self.run_dir / "reference.safetensors", {"format": "tinyllm-dpo-ref"})

    # ---- state ---------------------------------------------------------------------------------
    def save(self):
        lora_runs.save_step_adapter(self.run_dir, self.model, self.step)
        state = {"step": self.step, "train_seconds": self.train_seconds,
                 "order": self.order.state_dict()}
        ckpt.save_checkpoint(self.run_dir, lora_runs.checkpoint_model(self.model),
                             self.optimizer, state)
        lora_runs.prune_step_adapters(self.run_dir, self.step)

    def _restore(self):
        from tinyllm.safetensors import load_file

        state = ckpt.load_checkpoint(self.run_dir, lora_runs.checkpoint_model(self.model),
                                     self.optimizer)
        lora_runs.restore_step_adapter(self.run_dir, self.model, state["step"])
        self.step, self.train_seconds = state["step"], state["train_seconds"]
        self.order.load_state_dict(state["order"])
        self.ref, _ = load_file(self.run_dir / "reference.safetensors")
        self.log(f"resumed {self.run_dir} at step {self.step}")

    # ---- training and evaluation -----------------------------------------------------------
    def lr_at(self, step):
        c = self.cfg
        return optim.schedules.warmup_cosine(step, c.lr, min(c.warmup_steps, c.max_steps),
                                             c.max_steps, c.min_lr)

    def train_step(self):
        c = self.cfg
        idx = self.order.take(c.batch_size)
        self.optimizer.set_lr(self.lr_at(self.step))
        items = [self.train[i] for i in idx]
        logp_c, logp_r = pair_logprobs(self.model, items, self.end_id)
        dpo, chosen, rejected = dpo_loss(logp_c, logp_r, self.ref["train_chosen"][idx],
                                         self.ref["train_rejected"][idx], c.beta)
        loss = dpo + chosen_nll(logp_c, items) * c.sft_weight if c.sft_weight else dpo
        loss.backward()
        optim.clip_grad_norm(lora_mod.trainable_parameters(self.model), c.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        return float(asnumpy(loss.data)), {"dpo_loss": float(asnumpy(dpo.data)),
                                           **reward_metrics(asnumpy(chosen), asnumpy(rejected))}

    @ag.no_grad()
    def evaluate(self):
        """Loss and reward metrics on the held-out pairs, in the batches the cache used."""
        B, losses, chosen, rejected = self.cfg.batch_size, [], [], []
        for start in range(0, len(self.test), B):
            items = self.test[start:start + B]
            logp_c, logp_r = pair_logprobs(self.model, items, self.end_id)
            loss, c, r = dpo_loss(logp_c, logp_r, self.ref["test_chosen"][start:start + B],
                                  self.ref["test_rejected"][start:start + B], self.cfg.beta)
            losses.append(float(asnumpy(loss.data)) * len(items))
            chosen.append(asnumpy(c))
            rejected.append(asnumpy(r))
        metrics = reward_metrics(np.concatenate(chosen), np.concatenate(rejected))
        return {"val_loss": sum(losses) / len(self.test), **metrics}

    def preferred_rate(self):
        """Share of held-out prompts whose greedy reply is the chosen one, overall and by kind
        (the SFT helper's exact-match scorer, with the chosen reply as the answer)."""
        from tinyllm.align.sft import exact_match
        from tinyllm.align.sft_data import Example

        pairs = self.test_pairs[:self.cfg.sample_pairs]
        examples = [Example(p.prompt + [{"role": "assistant", "content": p.chosen}])
                    for p in pairs]
        _, replies = exact_match(self.model, self.tok, examples, self.cfg.sample_tokens)
        hits = [preferred(p, r) for p, r in zip(pairs, replies)]
        out = {"preferred_rate": float(np.mean(hits))}
        for kind in sorted({p.kind for p in pairs if p.kind}):
            sel = [h for h, p in zip(hits, pairs) if p.kind == kind]
            out[f"preferred_rate_{kind}"] = float(np.mean(sel))
        return out

    def _metrics(self, record):
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, stop_at=None):
        from tinyllm.progress import progress_bar

        c = self.cfg
        r = self.report
        self.log(f"DPO from {c.base_run}: {r['trainable_parameters']:,} of "
                 f"{r['total_parameters']:,} parameters train "
                 f"({100 * r['trainable_fraction']:.2f}%), beta {c.beta}")
        bar = progress_bar(total=c.max_steps, initial=self.step, enabled=c.progress, desc="dpo")
        start = time.perf_counter() - self.train_seconds
        before, last = None, None
        if self.step == 0:
            before = self.preferred_rate()
            self._eval(bar, extra={f"start_{k}": v for k, v in before.items()})
        try:
            while self.step < c.max_steps:
                if stop_at is not None and self.step >= stop_at:
                    self.save()
                    return None
                loss, batch = self.train_step()
                self.train_seconds = time.perf_counter() - start
                self._metrics({"step": self.step, "loss": loss, "dpo_loss": batch["dpo_loss"],
                               "lr": self.lr_at(self.step - 1),
                               "batch_reward_accuracy": batch["reward_accuracy"],
                               "time_s": self.train_seconds})
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{batch['reward_accuracy']:.2f}")
                if self.step % c.eval_interval == 0 or self.step == c.max_steps:
                    last = self._eval(bar)
        except KeyboardInterrupt:
            self.save()
            self.log(f"\ninterrupted at step {self.step}; checkpoint saved. Continue with: "
                     f"tinyllm dpo --resume {self.run_dir}")
            raise
        finally:
            bar.close()
        last = self.evaluate() if last is None else last
        after = self.preferred_rate()
        self._metrics({"step": self.step, **after})
        summary = {**last, **after, **({f"start_{k}": v for k, v in before.items()} if before
                                       else {}),
                   "steps": self.step, "wall_s": self.train_seconds,
                   **{k: v for k, v in self.report.items() if k != "lora_layers"},
                   "run_dir": str(self.run_dir)}
        lora_runs.save_final_adapter(self.run_dir, self.model, {"step": self.step})
        ckpt.write_json(self.run_dir / "summary.json", summary)
        plot_dpo(self.run_dir / "metrics.jsonl", self.run_dir / "dpo.png")
        return summary

    def _eval(self, bar, extra=None):
        metrics = {**self.evaluate(), **(extra or {})}
        self._metrics({"step": self.step, **metrics})
        bar.write(f"step {self.step}: val loss {metrics['val_loss']:.4f}, reward accuracy "
                  f"{metrics['reward_accuracy']:.3f}, margin {metrics['reward_margin']:.3f}")
        self.save()
        return metrics


def plot_dpo(metrics_path, out_path):
    """Loss (train and held-out) and held-out reward accuracy against step; None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines()]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, style in (("dpo_loss", "train", "-"), ("val_loss", "held-out", "o-")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            a.plot(*zip(*pts), style, label=label, alpha=0.7)
    a.set(xlabel="step", ylabel="DPO loss", title="loss (ln 2 at the start)")
    a.legend()
    pts = [(r["step"], r["reward_accuracy"]) for r in rows if "reward_accuracy" in r]
    if pts:
        b.plot(*zip(*pts), "o-")
    b.set(xlabel="step", ylabel="reward accuracy", title="held-out reward accuracy", ylim=(0, 1))
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)
