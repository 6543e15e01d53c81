"""Continued pre-training: `tinyllm train --init-from RUN --data new_texts/`.

A new run starts from RUN's weights instead of random ones and keeps RUN's tokenizer (new text
is encoded with the same ids the weights were trained on) and its architecture. Flags that would
change either are refused with one line: a different `--vocab-size` would mean a different
tokenizer, and a different width or depth does not fit the weights. Settings that do not
touch the weights' shapes (dropout, dtype) may change; so may every training setting.
"""

from __future__ import annotations

from pathlib import Path

from tinyllm import checkpoint as ckpt
from tinyllm.model import GPTConfig

#: model settings a continued run may change (the rest are fixed by the weights)
FREE_FIELDS = {"dropout", "dtype"}


def init_config(cfg):
    """(GPTConfig, tokenizer path) for a run that starts from `cfg.init_from`. `cfg.model`
    holds only the model flags given explicitly; any that contradicts the run is an error."""
    run = Path(cfg.init_from)
    if not (run / "config.json").exists():
        raise FileNotFoundError(f"--init-from {run}: not a run directory (no config.json)")
    ckpt.checkpoint_dir(run)  # fails with a clear line if the run has no checkpoint
    model = ckpt.read_json(run / "config.json")["model"]
    for name, value in cfg.model.items():
        if name in FREE_FIELDS or model.get(name) == value:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "vocab_size":
            raise ValueError(f"{flag} {value} differs from {run}'s vocabulary "
                             f"({model[name]}): continued pre-training keeps the run's tokenizer")
        raise ValueError(f"{flag} {value} differs from {run}'s {model.get(name)!r}: the model's "
                         "shape is fixed by the weights it starts from")
    if cfg.tokenizer is not None and Path(cfg.tokenizer) != run / "tokenizer.json":
        raise ValueError(f"--tokenizer cannot be combined with --init-from: the run's own "
                         f"tokenizer ({run / 'tokenizer.json'}) is kept")
    merged = GPTConfig.from_dict({**model, **{k: v for k, v in cfg.model.items()
                                              if k in FREE_FIELDS}})
    ckpt.check_fits(ckpt.checkpoint_dir(run), merged)  # before the model is built for it
    return merged, str(run / "tokenizer.json")


def check_same_tokenizer(tok, cfg):
    """Data prepared beforehand carries its own tokenizer: it must be the run's."""
    from tinyllm.tokenizer import BPETokenizer

    own = BPETokenizer.load(Path(cfg.init_from) / "tokenizer.json")
    if (tok.merges, tok.special_tokens) != (own.merges, own.special_tokens):
        raise ValueError(f"--data {cfg.data} was prepared with a different tokenizer than "
                         f"{cfg.init_from}'s; prepare the text again with "
                         f"--tokenizer {Path(cfg.init_from) / 'tokenizer.json'}")


def load_init_weights(model, cfg):
    ckpt.load_weights(model, ckpt.checkpoint_dir(cfg.init_from))
