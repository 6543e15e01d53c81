"""LoRA on a GPT: pick layers by name, train only their adapters, save the adapters alone.

    cfg = LoRAConfig(rank=8, alpha=16, targets=("c_attn", "c_proj", "c_fc"))
    report = apply_lora(model, cfg)          # wraps the matching Linear layers, freezes the rest
    optimizer = AdamW(trainable_parameters(model), ...)    # the adapters alone reach it
    ...train...
    save_adapter("adapter.safetensors", model, cfg, base_hash)    # a few hundred KB
    export_state_dict(model)                 # plain GPT weights, the update merged in

The layer itself (`autograd.nn.LoRALinear`) is generic; this module knows about GPTs: the module
names of its projections, the chat tokens fine-tuning adds, and the run folders.

Targets are module-name patterns: a pattern with a wildcard (`*`, `?`) is matched against the
whole dotted name (`transformer.h.*.attn.c_proj`); a plain one matches a name equal to it or
ending in `.pattern` (`c_proj` matches both projections, `attn.c_proj` only attention's).

New token rows. Fine-tuning for chat adds tokens (`<|user|>`, `<|end|>`, ...) whose embedding
rows start equal (the mean row). Frozen, they would stay indistinguishable, so with
`new_token_rows=k` the last k rows of the token embedding (tied to the output layer) train with
the adapters: a few hundred numbers. `TrainableRows` holds them apart from the frozen rows.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields

import numpy as np

import autograd as ag
from autograd import nn
from autograd.backend import asnumpy
from autograd.nn.lora import LoRALinear, lora_layers

DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")
FORMAT = "tinyllm-lora-adapter"


def _split(patterns):
    """'a,b' or ['a', 'b'] -> ('a', 'b')."""
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    return tuple(p.strip() for p in patterns if p.strip())


class LoRAError(ValueError):
    """A LoRA setting, or adapter file, that does not fit the model; the message says why."""


@dataclass
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple = DEFAULT_TARGETS
    new_token_rows: int = 0  # rows at the end of the token embedding that train too
    train_also: tuple = ()  # parameter-name patterns trained in full beside the adapters

    def __post_init__(self):
        self.train_also = _split(self.train_also)
        self._check()

    def _check(self):
        self.targets = _split(self.targets)
        if not self.targets:
            raise LoRAError("--lora-targets: give at least one module-name pattern")
        if int(self.rank) != self.rank or self.rank < 1:
            raise LoRAError(f"--lora-rank must be a positive integer, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise LoRAError(f"--lora-dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self):
        d = asdict(self)
        d["targets"], d["train_also"] = list(self.targets), list(self.train_also)
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---- command-line flags (shared by `tinyllm finetune` and `tinyllm dpo`) ---------------------
def add_lora_arguments(parser):
    """Add --lora-rank, --lora-alpha, --lora-dropout, --lora-targets to an argparse parser."""
    g = parser.add_argument_group("LoRA (train a low-rank adapter instead of every weight)")
    g.add_argument("--lora-rank", type=int, default=None, metavar="R",
                   help="rank of the adapters; LoRA is on when this is given (e.g. 8)")
    g.add_argument("--lora-alpha", type=float, default=None, metavar="ALPHA",
                   help="scale numerator: the update is alpha/rank * A @ B (default 2 * rank)")
    g.add_argument("--lora-dropout", type=float, default=0.0, metavar="P",
                   help="dropout on the adapters' input (default 0)")
    g.add_argument("--lora-targets", default=",".join(DEFAULT_TARGETS), metavar="PATTERNS",
                   help="comma-separated module-name patterns (default: c_attn,c_proj,c_fc, "
                        "the attention and MLP projections)")
    g.add_argument("--lora-train-also", default="", metavar="PATTERNS",
                   help="parameter-name patterns trained in full beside the adapters, saved "
                        "with them (e.g. wpe,ln_1,ln_2,ln_f: position embedding and norms)")
    return g


def lora_config_from_args(args, new_token_rows=0):
    """The LoRAConfig the flags ask for, or None when --lora-rank was not given."""
    if getattr(args, "lora_rank", None) is None:
        return None
    alpha = 2.0 * args.lora_rank if args.lora_alpha is None else args.lora_alpha
    return LoRAConfig(rank=args.lora_rank, alpha=alpha, dropout=args.lora_dropout,
                      targets=args.lora_targets, new_token_rows=new_token_rows,
                      train_also=args.lora_train_also)


# ---- choosing and wrapping layers -----------------------------------------------------------
def _matches(name, pattern):
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.endswith("." + pattern)


def _summarise(names):
    """Module names with layer numbers folded: transformer.h.N.attn.c_attn (N = 0..3)."""
    folded = sorted({re.sub(r"\.h\.\d+\.", ".h.N.", n) for n in names})
    layers = sorted({int(m) for n in names for m in re.findall(r"\.h\.(\d+)\.", n)})
    note = f" (N = {layers[0]}..{layers[-1]})" if layers else ""
    return ", ".join(folded) + note


def find_targets(model, patterns):
    """The dotted names of the Linear layers matching `patterns`; a pattern matching none is
    an error listing the names there are."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    chosen = []
    for pattern in patterns:
        hits = [n for n in linears if _matches(n, pattern)]
        if not hits:
            raise LoRAError(f"--lora-targets: {pattern!r} matches no Linear layer; the model's "
                            f"are: {_summarise(linears)}")
        chosen += [n for n in hits if n not in chosen]
    return [n for n in linears if n in chosen]  # in model order


def _parent(model, dotted):
    parent = model
    *path, leaf = dotted.split(".")
    for part in path:
        parent = getattr(parent, part)
    return parent, leaf


class TrainableRows(nn.Module):
    """A token embedding whose first rows are frozen and last rows train.

    `weight` is built on each use as concatenate([frozen, rows]), so both the lookup and the
    tied output layer (which read `.weight`) see one table, and the gradient reaches only
    `rows`."""

    def __init__(self, embedding, n_rows):
        super().__init__()
        data = embedding.weight.data
        self.num, self.dim = embedding.num, embedding.dim
        self.frozen = nn.Parameter(data[:-n_rows].copy(), requires_grad=False)
        self.rows = nn.Parameter(data[-n_rows:].copy())

    @property
    def weight(self):
        return ag.concatenate([self.frozen, self.rows], axis=0)

    def forward(self, ids):
        return ag.functional.embedding(ids, self.weight)


def apply_lora(model, cfg: LoRAConfig, rng=None):
    """Freeze `model` and wrap each target Linear in a LoRALinear (in place).

    Returns a report: the wrapped layer names, trainable and total parameter counts, and the
    trainable fraction. Adapters are drawn from `rng` (default: a generator seeded with 0).
    The model keeps the config and its base's weight hash as `lora_config`, `lora_base_hash`
    (plain attributes: not parameters, not saved with the weights)."""
    if lora_layers(model):
        raise LoRAError("this model already has LoRA adapters")
    names = find_targets(model, cfg.targets)
    if getattr(model.config, "mlp", "gelu") == "swiglu":
        fused = [n for n in names if n.endswith(("mlp.c_fc", "mlp.c_up"))]
        if fused:  # the SwiGLU op reads these weights directly, bypassing the layer
            raise LoRAError(f"--lora-targets: LoRA on a SwiGLU MLP's {fused[0]} is not "
                            "supported; target c_attn,c_proj instead")
    rng = np.random.default_rng(0) if rng is None else rng
    model.lora_base_hash = weights_hash(model.state_dict())
    model.lora_config = cfg
    model.requires_grad_(False)
    for name in names:
        parent, leaf = _parent(model, name)
        setattr(parent, leaf, LoRALinear.from_linear(getattr(parent, leaf), cfg.rank, cfg.alpha,
                                                     cfg.dropout, rng=rng))
    model.lora_extra = _unfreeze(model, cfg.train_also)
    if cfg.new_token_rows:
        wte = model.transformer.wte
        if not model.config.tie_weights:
            raise LoRAError("training new token rows needs tied embeddings")
        model.transformer.wte = TrainableRows(wte, cfg.new_token_rows)
    return parameter_report(model, names)


def _param_matches(name, pattern):
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return f".{pattern}." in f".{name}."  # whole dotted components: "ln_1", "wpe", "h.3"


def _unfreeze(model, patterns):
    """Make the parameters matching `patterns` trainable; returns their names. A pattern that
    matches no parameter is an error listing them."""
    params = [n for n, _ in model.named_parameters()]
    chosen = []
    for pattern in patterns:
        hits = [n for n in params if _param_matches(n, pattern) and "lora_" not in n]
        if not hits:
            raise LoRAError(f"--lora-train-also: {pattern!r} matches no parameter; the model's "
                            f"are: {_summarise(params)}")
        chosen += [n for n in hits if n not in chosen]
    own = dict(model.named_parameters())
    for name in chosen:
        own[name].requires_grad_(True)
    return chosen


def parameter_report(model, names=None):
    trainable = sum(p.size for p in model.parameters() if p.requires_grad)
    total = sum(p.size for p in model.parameters())
    return {"lora_layers": names if names is not None else [n for n, _ in lora_layers(model)],
            "trainable_parameters": int(trainable), "total_parameters": int(total),
            "trainable_fraction": trainable / max(total, 1)}


def trainable_parameters(model):
    """The parameters an optimizer should get: with LoRA applied, the adapters alone."""
    return [p for p in model.parameters() if p.requires_grad]


# ---- weights: plain GPT, adapter-only, and the base's fingerprint ----------------------------
def _is_adapter_key(name):
    return name.rsplit(".", 1)[-1] in ("lora_A", "lora_B") or name.endswith("wte.rows")


def export_state_dict(model):
    """Plain GPT weights (GPT-2 names) with every adapter merged in; the model is untouched.
    What a LoRA run saves as its model, so every other command loads it as a GPT."""
    out = {}
    for name, p in model._named_parameters_all():
        if _is_adapter_key(name):
            continue
        out[name] = asnumpy(p.data)
    for name, layer in lora_layers(model):
        if not layer.merged:
            out[name + ".weight"] = asnumpy(layer.weight.data + layer.delta_weight())
    wte = model.transformer.wte
    if isinstance(wte, TrainableRows):  # one table again, under its GPT-2 name
        del out["transformer.wte.frozen"]
        out["transformer.wte.weight"] = asnumpy(wte.weight.data)
    return out


def merge_lora(model):
    """Fold every adapter into its weights and put plain layers back, in place: the model is
    then an ordinary GPT (same names, same cost)."""
    for name, layer in lora_layers(model):
        parent, leaf = _parent(model, name)
        setattr(parent, leaf, layer.to_linear())
    wte = model.transformer.wte
    if isinstance(wte, TrainableRows):
        plain = nn.Embedding(wte.num, wte.dim, dtype=wte.frozen.dtype)
        plain.weight = nn.Parameter(wte.weight.data.copy())
        model.transformer.wte = plain
    model.lora_extra = ()
    model.requires_grad_(True)
    return model


def _trained(model, name):
    return _is_adapter_key(name) or name in getattr(model, "lora_extra", ())


def adapter_state_dict(model):
    """{name: array} of the trained numbers alone (A, B, new token rows, `train_also`)."""
    return {n: asnumpy(p.data) for n, p in model.named_parameters() if _trained(model, n)}


def weights_hash(state):
    """SHA-256 of a state dict ({name: array}), names sorted, dtype and shape included: the
    fingerprint an adapter keeps of the base it was trained on."""
    h = hashlib.sha256()
    for name in sorted(state):
        arr = np.ascontiguousarray(asnumpy(state[name]))
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def base_state_dict(model):
    """The frozen weights of a LoRA model, under their GPT-2 names: everything but the
    adapters, the new token rows and the `train_also` parameters."""
    return {n: p.data for n, p in model._named_parameters_all() if not _trained(model, n)}


def save_adapter(path, model, cfg: LoRAConfig, base_hash: str, extra=None):
    """Write the adapter alone: safetensors holding A and B, with the LoRA config and the
    base's weight hash in its metadata."""
    from tinyllm.safetensors import save_file

    meta = {"format": FORMAT, "lora": json.dumps(cfg.to_dict()), "base_hash": base_hash,
            **{k: json.dumps(v) for k, v in (extra or {}).items()}}
    save_file(adapter_state_dict(model), path, meta)


def read_adapter(path):
    """(arrays, LoRAConfig, metadata) of an adapter file, with errors naming the file."""
    from tinyllm.safetensors import SafetensorsError, load_file

    try:
        arrays, meta = load_file(path)
    except SafetensorsError as err:
        raise LoRAError(str(err)) from None
    except FileNotFoundError:
        raise LoRAError(f"{path}: no such adapter file") from None
    if meta.get("format") != FORMAT:
        raise LoRAError(f"{path}: not a LoRA adapter (format {meta.get('format')!r})")
    return arrays, LoRAConfig.from_dict(json.loads(meta["lora"])), meta


def load_adapter(path, model, base_hash=None):
    """Put the adapter in `path` onto `model` (a plain GPT holding the base weights): checks
    the base's hash (`base_hash`, or computed from the model), applies LoRA with the saved
    config and loads A and B. Returns the LoRAConfig."""
    arrays, cfg, meta = read_adapter(path)
    if lora_layers(model):
        raise LoRAError("the model already has LoRA adapters")
    have = base_hash or weights_hash(model.state_dict())
    if meta["base_hash"] != have:
        raise LoRAError(f"{path} was trained on a different base model (its weights hash "
                        f"{meta['base_hash'][:12]}..., this model's {have[:12]}...)")
    apply_lora(model, cfg)
    own = dict(model.named_parameters())
    missing = sorted({n for n in own if _trained(model, n)} - set(arrays))
    unexpected = sorted(set(arrays) - set(own))
    if missing or unexpected:
        raise LoRAError(f"{path} does not fit the model: missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}")
    for name, arr in arrays.items():
        if tuple(arr.shape) != tuple(own[name].shape):
            raise LoRAError(f"{path}: {name} has shape {tuple(arr.shape)}, the model's "
                            f"{tuple(own[name].shape)}")
        own[name].data[...] = arr.astype(own[name].dtype)
    return cfg
