"""Supervised fine-tuning: teach a pre-trained GPT to answer, from prompt/response examples.

    base run   -> weights, config and tokenizer; the chat tokens added (vocab.prepare_chat_vocab)
    data       -> JSONL file or builtin:NAME -> rendered, masked sequences (sft_data)
    model      -> prepare_model_for_finetune (the hook where LoRA wraps layers), AdamW on the
                  parameters that still require grad, warmup + cosine learning rate
    loop       -> forward, masked cross-entropy on the assistant's tokens, backward, clip, step
    every `eval_interval` steps -> validation loss on held-out examples, a checkpoint
    at the start and the end    -> held-out exact match (greedy answers), base vs fine-tuned

The output is a run folder like pre-training's (config.json, tokenizer.json, checkpoint/,
metrics.jsonl, summary.json, loss.png), so `tinyllm sample` and `tinyllm chat` load it like any
run. As in pre-training, everything a step depends on is checkpointed (weights, optimizer,
batch order and position, the dropout generator), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

import autograd as ag
from autograd import optim
from autograd.backend import asnumpy
from tinyllm import checkpoint as ckpt
from tinyllm.align import lora_runs
from tinyllm.align.sft_data import IGNORE, SFTBatches, pad_batch, read_jsonl, tokenize_examples
from tinyllm.align.template import END_TOKEN, prompt_and_answer, render
from tinyllm.align.vocab import prepare_chat_vocab
from tinyllm.model import GPT, GPTConfig
from tinyllm.safetensors import atomic_write


@dataclass
class FinetuneConfig:
    base: str = ""  # the pre-trained run folder
    data: str = "builtin:reverse"  # a JSONL file or builtin:NAME
    out_dir: str = "runs/sft"
    batch_size: int = 32
    batching: str = "pad"  # "pad" (to the longest example in the batch) or "pack"
    max_steps: int = 300
    lr: float = 3e-3
    min_lr: float = 2e-4
    warmup_steps: int = 20
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # None keeps the base run's. 0 by default: pre-training's dropout fights overfitting a
    # small corpus many epochs over; a fine-tuning set is seen a few times, and learns faster
    # without it (builtin:reverse: validation loss 0.21 vs 0.42 after 100 steps)
    dropout: float | None = 0.0
    eval_interval: int = 100
    val_fraction: float = 0.1  # of a JSONL file's examples, held out (builtin sets have splits)
    eval_examples: int = 200  # held-out examples for validation loss and exact match
    answer_tokens: int = 24  # longest greedy answer in exact-match evaluation
    seed: int = 0
    progress: bool = True
    plot: bool = True  # loss.png at the end (when matplotlib is installed)
    # LoRA (tinyllm.align.lora): on when lora_rank is set; only the adapters train
    lora_rank: int | None = None
    lora_alpha: float | None = None  # None: 2 * rank
    lora_dropout: float = 0.0
    lora_targets: str = "c_attn,c_proj,c_fc"  # module-name patterns, comma-separated
    lora_train_also: str = ""  # parameter-name patterns trained in full (e.g. wpe,ln_1,ln_2,ln_f)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# --- pieces other commands reuse (chat, dpo) ----------------------------------------------------
def load_run(run_dir):
    """(model, tokenizer, saved config.json) of any run folder: pre-trained or fine-tuned."""
    from tinyllm.tokenizer import BPETokenizer

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.json)")
    saved = ckpt.read_json(run_dir / "config.json")
    model = ckpt.load_model(saved["model"], ckpt.checkpoint_dir(run_dir))
    return model, BPETokenizer.load(run_dir / "tokenizer.json"), saved


def trainable_parameters(model):
    return sum(p.size for p in model.parameters() if p.requires_grad)


def prepare_model_for_finetune(model, cfg: FinetuneConfig, log=print):
    """The hook between loading the base weights and making the optimizer: full fine-tuning
    trains every parameter, so this only reports the count. LoRA extends it to wrap layers with
    adapters and freeze the rest; the optimizer then gets the parameters that require grad."""
    if cfg.lora_rank is not None:
        from tinyllm.align.lora import LoRAConfig
        from tinyllm.align.lora_runs import prepare_lora

        alpha = 2.0 * cfg.lora_rank if cfg.lora_alpha is None else cfg.lora_alpha
        prepare_lora(model, LoRAConfig(cfg.lora_rank, alpha, cfg.lora_dropout, cfg.lora_targets,
                                       train_also=cfg.lora_train_also), cfg.base, log)
        return model
    trainable = trainable_parameters(model)
    log(f"trainable parameters: {trainable:,} of {model.num_parameters():,} "
        f"({100 * trainable / model.num_parameters():.1f}%)")
    return model


def load_examples(cfg: FinetuneConfig):
    """(train, validation, test) Example lists. builtin:NAME has three disjoint splits
    (validation loss on one, exact match on another, neither trained on); a file is shuffled
    with the seed and `val_fraction` of it held out, for both validation loss and exact match."""
    if cfg.data.startswith("builtin:"):
        from tinyllm.align.builtin_qa import builtin_examples

        name = cfg.data.split(":", 1)[1]
        return (builtin_examples(name, "train", seed=cfg.seed),
                builtin_examples(name, "val", n=cfg.eval_examples, seed=cfg.seed),
                builtin_examples(name, "test", n=cfg.eval_examples, seed=cfg.seed))
    examples = read_jsonl(cfg.data)
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {cfg.val_fraction}")
    if len(examples) < 2:
        raise ValueError(f"{cfg.data}: needs at least 2 examples (one to train, one held out)")
    order = np.random.default_rng(cfg.seed).permutation(len(examples))
    n_held = min(cfg.eval_examples, max(1, round(cfg.val_fraction * len(examples))))
    held_out = [examples[i] for i in order[:n_held]]
    return [examples[i] for i in order[n_held:]], held_out, held_out


@ag.no_grad()
def exact_match(model, tok, examples, max_new_tokens=24):
    """Share of examples whose greedy answer (up to <|end|>) equals the reference answer, and
    the answers. Prompts of equal length are generated together, one batch per length."""
    end = tok.special_tokens[END_TOKEN]
    by_length = {}
    for i, ex in enumerate(examples):
        prompt, answer = prompt_and_answer(ex.messages)
        ids, _ = render(tok, prompt, open_assistant=True)
        ids = ids[-model.config.block_size:]
        by_length.setdefault(len(ids), []).append((i, ids, answer))
    replies = [None] * len(examples)
    for group in by_length.values():
        prompts = np.asarray([ids for _, ids, _ in group])
        out = model.generate(prompts, max_new_tokens, temperature=0, stop_tokens=[end])
        for (i, _, _), row in zip(group, out[:, prompts.shape[1]:].tolist()):
            replies[i] = tok.decode(row[:row.index(end)] if end in row else row)
    correct = [r.strip() == prompt_and_answer(ex.messages)[1].strip()
               for r, ex in zip(replies, examples)]
    return float(np.mean(correct)), replies


@ag.no_grad()
def masked_loss(model, sequences, batch_size, pad_id):
    """Mean loss per assistant token over `sequences` (each batch weighted by its tokens)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(sequences), batch_size):
        x, y = pad_batch(sequences[start:start + batch_size], pad_id)
        n = int((y != IGNORE).sum())
        total += float(asnumpy(model(x, y, return_logits=False)[1].data)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


# --- the run ------------------------------------------------------------------------------------
class FineTuner:
    """One fine-tuning run. `FineTuner(cfg).run()`; `resume=True` continues `cfg.out_dir`."""

    def __init__(self, cfg: FinetuneConfig, resume=False, log=None):
        self.cfg = cfg
        self.run_dir = Path(cfg.out_dir)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if cfg.batching not in ("pad", "pack"):
            raise ValueError(f"--batching must be 'pad' or 'pack', got {cfg.batching!r}")
        if resume:  # the run's own (already grown) model, restored below from its checkpoint
            saved = ckpt.read_json(self.run_dir / "config.json")
            from tinyllm.tokenizer import BPETokenizer

            model_config = GPTConfig.from_dict(saved["model"])
            ckpt.check_fits(ckpt.checkpoint_dir(self.run_dir), model_config)
            self.model = GPT(model_config, seed=cfg.seed)
            self.tok = BPETokenizer.load(self.run_dir / "tokenizer.json")
        else:
            if (self.run_dir / "checkpoint").exists():
                raise ValueError(f"{self.run_dir} already holds a run; pick another --out, or "
                                 f"continue it with --resume {self.run_dir}")
            base_model, base_tok, _ = load_run(cfg.base)
            base_cfg = base_model.config.to_dict()
            if cfg.dropout is not None:
                base_cfg["dropout"] = cfg.dropout
            self.model = GPT(GPTConfig.from_dict(base_cfg), seed=cfg.seed)  # our dropout rng
            self.model.load_state_dict(base_model.state_dict())
            self.tok, added = prepare_chat_vocab(base_tok, self.model)
            if added:
                self.log(f"added {added} chat tokens to the vocabulary "
                         f"({self.model.config.vocab_size} ids)")
        self.model = prepare_model_for_finetune(self.model, cfg, self.log)
        self._load_data()
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        self.optimizer = optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.step, self.train_seconds, self.base_exact_match = 0, 0.0, None
        if resume:
            state = ckpt.load_checkpoint(self.run_dir, lora_runs.checkpoint_model(self.model),
                                         self.optimizer)
            lora_runs.restore_step_adapter(self.run_dir, self.model, state["step"])
            self.step, self.train_seconds = state["step"], state["train_seconds"]
            self.base_exact_match = state["base_exact_match"]
            self.batches.load_state_dict(state["batches"])
            ckpt.set_rng_state(self.model.rng, state["model_rng"])
            self._forget_metrics_after(self.step)
            self.log(f"resumed {self.run_dir} at step {self.step}")
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.write_json(self.run_dir / "config.json",
                            {"model": self.model.config.to_dict(), "finetune": asdict(cfg)})
            self.tok.save(self.run_dir / "tokenizer.json")
            (self.run_dir / "metrics.jsonl").write_text("")

    def _load_data(self):
        cfg, block = self.cfg, self.model.config.block_size
        train, val, test = load_examples(cfg)
        self.train_seqs, report = tokenize_examples(train, self.tok, block)
        self.log(f"train data {cfg.data}: {report}")
        self.val_seqs, val_report = tokenize_examples(val, self.tok, block)
        self.log(f"held out for validation loss: {val_report}")
        self.report = {"train": report.to_dict(), "validation": val_report.to_dict()}
        # exact match asks for the final assistant message of each held-out conversation
        self.held_out = [ex for ex in test if ex.messages[-1]["role"] == "assistant"]
        self.pad_id = self.tok.special_tokens[END_TOKEN]  # any id: padded positions are ignored
        self.batches = SFTBatches(self.train_seqs, cfg.batch_size, block, self.pad_id,
                                  mode=cfg.batching, seed=cfg.seed)

    def _state(self):
        return {"step": self.step, "train_seconds": self.train_seconds,
                "base_exact_match": self.base_exact_match, "batches": self.batches.state_dict(),
                "model_rng": ckpt.rng_state(self.model.rng)}

    def save(self):  # with LoRA: the step's adapters, then plain GPT weights (lora_runs.py)
        lora_runs.save_step_adapter(self.run_dir, self.model, self.step)
        ckpt.save_checkpoint(self.run_dir, lora_runs.checkpoint_model(self.model),
                             self.optimizer, self._state())
        lora_runs.prune_step_adapters(self.run_dir, self.step)

    def _forget_metrics_after(self, step):
        """Drop the metrics of steps after the checkpoint: the resumed run makes them again."""
        path = self.run_dir / "metrics.jsonl"
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        kept = "".join(x for x in lines if x.strip() and json.loads(x)["step"] <= step)
        atomic_write(path, lambda f: f.write(kept), mode="w")

    def _metrics(self, record):
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def lr_at(self, step):
        c = self.cfg
        return optim.schedules.warmup_cosine(step, c.lr, min(c.warmup_steps, c.max_steps),
                                             c.max_steps, c.min_lr)

    def train_step(self):
        """One batch: masked loss, backward, clip, update. Returns (loss, trained tokens)."""
        self.optimizer.set_lr(self.lr_at(self.step))
        x, y = self.batches.next_batch()
        loss = self.model(x, y, return_logits=False)[1]
        loss.backward()
        value = float(asnumpy(loss.data))
        norm = optim.clip_grad_norm([p for p in self.model.parameters() if p.requires_grad],
                                    self.cfg.grad_clip)
        if not (math.isfinite(value) and math.isfinite(norm)):
            raise RuntimeError(f"step {self.step}: the loss ({value:.4g}) or gradient norm "
                               f"({norm:.4g}) is not finite; lower --lr")
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        return value, int((y != IGNORE).sum())

    def evaluate(self):
        return {"val_loss": masked_loss(self.model, self.val_seqs, self.cfg.batch_size,
                                        self.pad_id)}

    def accuracy(self):
        return exact_match(self.model, self.tok, self.held_out, self.cfg.answer_tokens)

    def run(self, stop_at=None):
        """Fine-tune to `max_steps`; returns the summary (also in summary.json). `stop_at` ends
        early at that step with a checkpoint, as an interruption would (to test resume)."""
        from tinyllm.plot import plot_losses
        from tinyllm.progress import progress_bar

        c = self.cfg
        if self.base_exact_match is None:
            self.base_exact_match, _ = self.accuracy()
            self._metrics({"step": 0, "exact_match": self.base_exact_match,
                           **self.evaluate()})
            self.log(f"base model: held-out exact match {self.base_exact_match:.1%} "
                     f"on {len(self.held_out)} examples")
        bar = progress_bar(total=c.max_steps, initial=self.step, enabled=c.progress,
                           desc="finetune")
        outer_log, self.log = self.log, bar.write
        start = time.perf_counter() - self.train_seconds
        try:
            while self.step < c.max_steps:
                if stop_at is not None and self.step >= stop_at:
                    self.save()
                    return None
                t0 = time.perf_counter()
                loss, tokens = self.train_step()
                dt = time.perf_counter() - t0
                self.train_seconds = time.perf_counter() - start
                self._metrics({"step": self.step, "loss": loss, "lr": self.lr_at(self.step - 1),
                               "tokens_per_s": tokens / dt, "time_s": self.train_seconds})
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if self.step % c.eval_interval == 0 or self.step == c.max_steps:
                    metrics = self.evaluate()
                    self._metrics({"step": self.step, **metrics})
                    self.log(f"step {self.step}: val loss {metrics['val_loss']:.3f}")
                    self.save()
        except KeyboardInterrupt:
            self.save()
            self.log(f"\ninterrupted at step {self.step}; checkpoint saved. Continue with: "
                     f"tinyllm finetune --resume {self.run_dir}")
            raise
        finally:
            bar.close()
            self.log = outer_log
        accuracy, replies = self.accuracy()
        val = self.evaluate()
        self._metrics({"step": self.step, "exact_match": accuracy, **val})
        summary = {"base_exact_match": self.base_exact_match, "exact_match": accuracy,
                   "held_out_examples": len(self.held_out), **val, "steps": self.step,
                   "train_seconds": self.train_seconds, "data": self.report,
                   "trainable_parameters": trainable_parameters(self.model),
                   "parameters": self.model.num_parameters(), "run_dir": str(self.run_dir),
                   "examples": [{"question": prompt_and_answer(ex.messages)[0][-1]["content"],
                                 "expected": prompt_and_answer(ex.messages)[1], "answer": r}
                                for ex, r in list(zip(self.held_out, replies))[:5]]}
        lora_runs.save_final_adapter(self.run_dir, self.model)
        ckpt.write_json(self.run_dir / "summary.json", summary)
        if c.plot:
            plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")
        return summary


def finetune(cfg: FinetuneConfig, resume=False):
    """Fine-tune (or resume) a run; returns the summary dict."""
    return FineTuner(cfg, resume=resume).run()
