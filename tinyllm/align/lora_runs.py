"""LoRA in a run folder: checkpoints that stay plain GPTs, adapters saved alone, exact resume.

A LoRA run (`tinyllm finetune ... --lora-rank R`, `tinyllm dpo ... --lora-rank R`) writes

    checkpoint/model.safetensors       the plain GPT weights with the adapters merged in, so
                                       `tinyllm sample`, `chat`, `eval`, `dpo` load the run as
                                       any other (names and shapes of a GPT-2 checkpoint)
    adapters/step-N.safetensors        the adapters of the checkpoint's step (what resuming
                                       needs: the merged weights cannot be split again exactly)
    adapter.safetensors                at the end: the adapters alone, a few hundred KB, with
                                       the LoRA config and the base's weight hash

The base weights themselves come from the base run on resume, checked by their hash.

A trainer's calls, each a no-op for a model without adapters:

    save_step_adapter(run_dir, model, step)          first, then
    save_checkpoint(run_dir, checkpoint_model(model), optimizer, state), then
    prune_step_adapters(run_dir, step)               (a crash in between leaves a usable pair)
    load_checkpoint(run_dir, checkpoint_model(model), optimizer), then
    restore_step_adapter(run_dir, model, step)       on resume
    save_final_adapter(run_dir, model)               when the run ends
"""

from __future__ import annotations

from pathlib import Path

from autograd.nn import lora_layers
from tinyllm.align import lora as lora_mod


class MergedView:
    """What a LoRA model's checkpoint stores: the plain GPT weights, adapters merged in.
    `load_state_dict` is a no-op: on resume the base comes from the base run and the adapters
    from their own file (`restore_step_adapter`)."""

    def __init__(self, model):
        self.model = model

    def state_dict(self):
        return lora_mod.export_state_dict(self.model)

    def load_state_dict(self, state, strict=True):
        return None


def checkpoint_model(model):
    """The object to hand to save_checkpoint / load_checkpoint for `model`."""
    return MergedView(model) if lora_layers(model) else model


def _step_path(run_dir, step):
    return Path(run_dir) / "adapters" / f"step-{step}.safetensors"


def save_step_adapter(run_dir, model, step):
    """Write the adapters of `step`, then remove older steps' files. Call it before the
    checkpoint of `step` is written, so every complete checkpoint has its adapters."""
    if not lora_layers(model):
        return
    path = _step_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    lora_mod.save_adapter(path, model, model.lora_config, model.lora_base_hash, {"step": step})


def prune_step_adapters(run_dir, step):
    """Remove the adapter files of steps other than `step` (after its checkpoint is saved)."""
    folder = Path(run_dir) / "adapters"
    for old in folder.glob("step-*.safetensors") if folder.is_dir() else ():
        if old.name != _step_path(run_dir, step).name:
            old.unlink()


def restore_step_adapter(run_dir, model, step):
    """Load the adapters saved with the checkpoint of `step` into `model` (LoRA applied)."""
    if not lora_layers(model):
        return
    arrays, cfg, meta = lora_mod.read_adapter(_step_path(run_dir, step))
    if meta["base_hash"] != model.lora_base_hash:
        raise lora_mod.LoRAError(f"{_step_path(run_dir, step)}: trained on a different base "
                                 "model than the one loaded")
    own = dict(model.named_parameters())
    for name, arr in arrays.items():
        if name not in own or own[name].shape != arr.shape:
            raise lora_mod.LoRAError(f"{_step_path(run_dir, step)}: {name} does not fit the "
                                     "model")
        own[name].data[...] = arr


def save_final_adapter(run_dir, model, extra=None):
    """adapter.safetensors: the adapters alone, to share or to load onto the base run."""
    if not lora_layers(model):
        return None
    path = Path(run_dir) / "adapter.safetensors"
    lora_mod.save_adapter(path, model, model.lora_config, model.lora_base_hash, extra)
    return path


def prepare_lora(model, lora, base_run, log=print):
    """The fine-tuning hook for LoRA: give `model` the base run's weights (the chat tokens added
    as fine-tuning adds them), then wrap its target layers. `lora` is a LoRAConfig or its dict.

    The base weights are loaded here, not trusted from the caller: a resumed run builds its
    model from the config alone, and the adapters are only meaningful on the exact base (its
    hash is checked when the step's adapters are restored). The chat-token rows that
    fine-tuning added train with the adapters. Returns the parameter report."""
    from tinyllm.align.sft import load_run
    from tinyllm.align.vocab import prepare_chat_vocab

    cfg = lora if isinstance(lora, lora_mod.LoRAConfig) else lora_mod.LoRAConfig.from_dict(lora)
    base, tok, _ = load_run(base_run)
    _, added = prepare_chat_vocab(tok, base)
    if base.config.vocab_size != model.config.vocab_size:
        raise lora_mod.LoRAError(f"{base_run}: vocabulary of {base.config.vocab_size} ids "
                                 f"(with the chat tokens), the run's model has "
                                 f"{model.config.vocab_size}")
    model.load_state_dict(base.state_dict())
    cfg.new_token_rows = added
    report = lora_mod.apply_lora(model, cfg)
    extra = f", {len(model.lora_extra)} parameters in full" if model.lora_extra else ""
    log(f"LoRA rank {cfg.rank} (alpha {cfg.alpha}) on {len(report['lora_layers'])} layers"
        f"{f' and {added} new token rows' if added else ''}{extra}: "
        f"{report['trainable_parameters']:,} of {report['total_parameters']:,} parameters "
        f"train ({100 * report['trainable_fraction']:.2f}%)")
    return report
