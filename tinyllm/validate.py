"""Checks of user-given settings, made before any work starts.

A bad value should stop a command at once with one line that names the flag, not after a
five-minute data pass or as a traceback from deep inside the model. Every check here raises
`ValueError` with such a line; the `tinyllm` command prints it as `tinyllm CMD: error: ...`.
Names are given by the caller (`--top-k` on the command line, `top_k` in Python), so the same
checks serve both.

    check_train(cfg, model_cfg)        every training and model setting, then the memory check
    check_sampling(...)                max_new_tokens, temperature, top_k, top_p
    check_vocab_size(n, specials)      a byte-level BPE needs 256 byte tokens plus its specials
    estimate_training_memory(...)      bytes one training step needs, by part
    available_memory()                 bytes this process can still use (None if unknown)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

DTYPES = ("float32", "float64")
FLOAT16_REFUSAL = (
    "--dtype float16 is not supported: NumPy has no fast float16 matrix product (it runs "
    "many times slower than float32 on the CPU), and float16 weights without loss scaling or "
    "float32 master weights overflow (largest value 65504) and lose the small updates of "
    "AdamW, so the loss turns NaN within the first steps; use float32 (or float64 to check)"
)


def flag_name(field_name: str) -> str:
    """The command-line flag of a config field: `grad_accum` -> `--grad-accum`."""
    return "--" + field_name.replace("_", "-")


# ---- single values ---------------------------------------------------------------------------
def at_least(name, value, lowest):
    if value is not None and value < lowest:
        raise ValueError(f"{name} must be at least {lowest}, got {value}")


def positive(name, value):
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


def in_range(name, value, low, high, *, low_open=False, high_open=True):
    """low <= value < high by default; `low_open` / `high_open` exclude the ends."""
    if value is None:
        return
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")


def check_vocab_size(vocab_size, n_special=1, name="--vocab-size"):
    """A byte-level BPE starts from the 256 single bytes and adds its special tokens."""
    lowest = 256 + n_special
    if vocab_size < lowest:
        raise ValueError(f"{name} must be at least {lowest} (256 byte tokens + {n_special} "
                         f"special), got {vocab_size}")


def check_sampling(max_new_tokens=None, temperature=None, top_k=None, top_p=None, *,
                   names=None):
    """The sampling settings of `generate` / `tinyllm sample`; `names` maps each to its flag."""
    names = {"max_new_tokens": "max_new_tokens", "temperature": "temperature",
             "top_k": "top_k", "top_p": "top_p", **(names or {})}
    at_least(names["max_new_tokens"], max_new_tokens, 0)
    if temperature is not None and not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"{names['temperature']} must be 0 (greedy) or positive, "
                         f"got {temperature}")
    at_least(names["top_k"], top_k, 1)
    in_range(names["top_p"], top_p, 0, 1, low_open=True, high_open=False)


# ---- a whole training configuration ----------------------------------------------------------
# field: (check, *arguments). Fields not listed (added later) are checked by their own code.
_TRAIN_RULES = {
    "batch_size": (at_least, 1), "grad_accum": (at_least, 1), "max_steps": (at_least, 1),
    "max_minutes": (positive,), "lr": (positive,), "min_lr": (at_least, 0),
    "warmup_steps": (at_least, 0), "weight_decay": (at_least, 0),
    "beta1": (in_range, 0, 1), "beta2": (in_range, 0, 1), "grad_clip": (positive,),
    "eval_interval": (at_least, 1), "eval_tokens": (at_least, 1),
    "sample_tokens": (at_least, 0), "seed": (at_least, 0),
}
_MODEL_RULES = {
    "vocab_size": (at_least, 1), "block_size": (at_least, 1), "n_layer": (at_least, 1),
    "n_head": (at_least, 1), "n_embd": (at_least, 1), "dropout": (in_range, 0, 1),
    "rope_base": (positive,),
}


def check_fields(values: dict, rules=None):
    """Apply `rules` (default: both tables) to the fields present in `values`."""
    rules = rules or {**_TRAIN_RULES, **_MODEL_RULES}
    for name, (check, *bounds) in rules.items():
        if name in values:
            check(flag_name(name), values[name], *bounds)


def check_dtype(dtype, device="cpu"):
    if dtype == "float16":
        raise ValueError(FLOAT16_REFUSAL)
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def check_train(cfg, model_cfg: dict, *, trains_tokenizer=True, available=None):
    """Every setting of a training run (`cfg` a TrainConfig, `model_cfg` the GPTConfig fields),
    then whether one training step fits in memory. Raises ValueError naming the flag."""
    from dataclasses import asdict

    from tinyllm.model import GPTConfig

    check_fields(asdict(cfg), _TRAIN_RULES)
    check_fields(model_cfg, _MODEL_RULES)
    check_dtype(model_cfg.get("dtype", "float32"), cfg.device)
    n_embd, n_head = model_cfg.get("n_embd", 1), model_cfg.get("n_head", 1)
    if n_embd % n_head:
        raise ValueError(f"--n-embd ({n_embd}) must be a multiple of --n-head ({n_head})")
    if trains_tokenizer:
        check_vocab_size(model_cfg.get("vocab_size", GPTConfig.vocab_size))
    config = GPTConfig(**model_cfg)  # the model's own checks (choices, RoPE head size)
    if cfg.device == "cpu":
        check_memory(config, cfg.batch_size, available=available)
    return config


# ---- memory ----------------------------------------------------------------------------------
def estimate_training_memory(config, batch_size) -> dict:
    """Bytes one training step holds at its peak, by part. An estimate: on five shapes it came
    within -3% to +15% of the peak tracemalloc measures (tests/tinyllm/test_cli_validate.py).

    params     the weights, their gradients and AdamW's two moments: 4 copies of N numbers
    layers     what each block keeps for backward, per token: about 16 vectors of width C
               (norms, q k v, attention output, residuals) plus the MLP's hidden activations
    attention  the attention probabilities of every layer, B * H * T * T (kept for backward),
               plus the scores of the layer being computed
    logits     B * T * V logits, their softmax and their gradient
    """
    B, T, C, L = batch_size, config.block_size, config.n_embd, config.n_layer
    V, H, hidden = config.vocab_size, config.n_head, config.mlp_hidden
    itemsize = 8 if config.dtype == "float64" else 4
    n_params = _count_parameters(config)
    per_token = 16 * C + (3 if config.mlp == "swiglu" else 2) * hidden
    parts = {
        "params": 4 * n_params,
        "layers": L * B * T * per_token,
        "attention": (L + 2) * B * H * T * T,
        "logits": 3 * B * T * V,
    }
    return {name: count * itemsize for name, count in parts.items()}


def _count_parameters(config):
    """Parameter count from the shapes alone (no weights are made); equals GPT.num_parameters."""
    C, V, L, hidden, bias = (config.n_embd, config.vocab_size, config.n_layer,
                             config.mlp_hidden, config.bias)
    attention = 4 * C * C + (4 * C if bias else 0)
    if config.mlp == "swiglu":
        mlp = 3 * C * hidden
    else:
        mlp = 2 * C * hidden + ((hidden + C) if bias else 0)
    norm = 2 * C if config.norm == "layernorm" and bias else C
    embeddings = V * C * (1 if config.tie_weights else 2)
    if config.pos == "learned":
        embeddings += config.block_size * C
    return L * (attention + mlp + 2 * norm) + norm + embeddings


def available_memory():
    """Bytes this process may still allocate: the smaller of the system's available memory
    and what is left under a cgroup (container) limit; None when neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _gib(n):
    return f"{n / 2**30:,.1f} GiB"


def check_memory(config, batch_size, available=None):
    """Refuse a configuration whose training step would not fit in the memory left."""
    available = available_memory() if available is None else available
    if available is None:
        return
    parts = estimate_training_memory(config, batch_size)
    need = sum(parts.values())
    if need > available:
        detail = ", ".join(f"{name} {_gib(n)}" for name, n in
                           sorted(parts.items(), key=lambda kv: -kv[1]))
        raise ValueError(
            f"a training step with --block-size {config.block_size}, --batch-size {batch_size} "
            f"would need about {_gib(need)} ({detail}) but this machine has {_gib(available)} "
            f"available; lower --block-size or --batch-size (--grad-accum keeps the tokens "
            f"per step)")
