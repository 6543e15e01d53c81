"""Hugging Face configs and tensor names <-> this library's GPTConfig and GPT-2 names.

Two HF architectures fit the GPT of tinyllm/model.py:

* `GPT2LMHeadModel`: the same layout and names (`transformer.h.{i}.attn.c_attn.weight`, ...);
  its Conv1D weights are stored (in, out), as ours, so tensors map one to one. The original
  OpenAI files use the bare names (`h.0.attn.c_attn.weight`), which are accepted too.
* `LlamaForCausalLM`: RoPE, SwiGLU, RMSNorm, no biases. Its nn.Linear weights are stored
  (out, in), so each is transposed; q, k and v are three matrices where we have one `c_attn`
  (their transposes side by side). HF's RoPE pairs feature i with i + d/2 ("rotate half"), which
  is the pairing of our rotary op, so q and k need no permutation (the tests check numerically).

Every setting of the HF config that the GPT cannot reproduce is refused, naming the setting:
a model that loads but computes something else would be worse than no model.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.model import GPTConfig

GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # the tanh form of GELU, as ours
LAYERNORM_EPS, RMSNORM_EPS = 1e-5, 1e-6  # what tinyllm/model.py's norms use


def _check(ok, setting, value, want):
    if not ok:
        raise ValueError(f"config.json: {setting} = {value!r} is not supported (this GPT needs "
                         f"{want})")


def _close(a, b):
    return a is not None and math.isclose(float(a), b, rel_tol=1e-6)


def architecture(hf: dict) -> str:
    """'gpt2' or 'llama', from the config's model_type / architectures."""
    kind = hf.get("model_type")
    archs = hf.get("architectures") or []
    if kind == "gpt2" or "GPT2LMHeadModel" in archs:
        return "gpt2"
    if kind == "llama" or "LlamaForCausalLM" in archs:
        return "llama"
    raise ValueError(f"config.json: model_type {kind!r} / architectures {archs} is not supported "
                     "(GPT2LMHeadModel or LlamaForCausalLM)")


def rope_theta(hf: dict) -> float:
    """RoPE's base, from `rope_theta` or (newer transformers) `rope_parameters`; refuses any
    scaled RoPE, which this GPT does not have."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling")
    kind = params.get("rope_type", "default")
    _check(scaling is None, "rope_scaling", scaling, "plain RoPE: null")
    _check(kind == "default", "rope_parameters.rope_type", kind, "'default'")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf(hf: dict) -> GPTConfig:
    """The GPTConfig equivalent to an HF config.json, or ValueError naming the first setting
    that has no equivalent."""
    kind = architecture(hf)
    if kind == "gpt2":
        C = hf.get("n_embd", 768)
        act = hf.get("activation_function", "gelu_new")
        _check(act in GPT2_ACTIVATIONS, "activation_function", act, " or ".join(GPT2_ACTIVATIONS))
        eps = hf.get("layer_norm_epsilon", 1e-5)
        _check(_close(eps, LAYERNORM_EPS), "layer_norm_epsilon", eps, LAYERNORM_EPS)
        inner = hf.get("n_inner")
        _check(inner in (None, 4 * C), "n_inner", inner, f"null or {4 * C}")
        for name, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                           ("add_cross_attention", False)):
            _check(hf.get(name, want) == want, name, hf.get(name), want)
        return GPTConfig(vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", 1024),
                         n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), n_embd=C,
                         dropout=float(hf.get("resid_pdrop", 0.0)), bias=True,
                         tie_weights=bool(hf.get("tie_word_embeddings", True)))
    C, H = hf["hidden_size"], hf["num_attention_heads"]
    act = hf.get("hidden_act", "silu")
    _check(act == "silu", "hidden_act", act, "'silu' (SwiGLU)")
    kv = hf.get("num_key_value_heads") or H
    _check(kv == H, "num_key_value_heads", kv, f"= num_attention_heads ({H}): no grouped-query attention")
    head_dim = hf.get("head_dim") or C // H
    _check(head_dim * H == C, "head_dim", head_dim, f"hidden_size / num_attention_heads = {C // H}")
    eps = hf.get("rms_norm_eps", 1e-6)
    _check(_close(eps, RMSNORM_EPS), "rms_norm_eps", eps, RMSNORM_EPS)
    _check(not hf.get("mlp_bias", False), "mlp_bias", hf.get("mlp_bias"), "false")
    _check(hf.get("pretraining_tp", 1) == 1, "pretraining_tp", hf.get("pretraining_tp"), 1)
    config = GPTConfig(vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 2048),
                       n_layer=hf["num_hidden_layers"], n_head=H, n_embd=C,
                       dropout=float(hf.get("attention_dropout", 0.0)),
                       bias=bool(hf.get("attention_bias", False)), pos="rope", mlp="swiglu",
                       norm="rmsnorm", tie_weights=bool(hf.get("tie_word_embeddings", False)),
                       rope_base=rope_theta(hf))
    inter = hf.get("intermediate_size")
    _check(inter == config.mlp_hidden, "intermediate_size", inter,
           f"{config.mlp_hidden}, the SwiGLU width this GPT derives from hidden_size {C}")
    return config


def hf_kind(config: GPTConfig) -> str:
    """Which HF architecture a run exports as; refuses a mix that neither has."""
    gpt2 = dict(pos="learned", mlp="gelu", norm="layernorm")
    llama = dict(pos="rope", mlp="swiglu", norm="rmsnorm")
    for kind, want in (("gpt2", gpt2), ("llama", llama)):
        if all(getattr(config, k) == v for k, v in want.items()):
            return kind
    raise ValueError(f"this run has pos={config.pos}, mlp={config.mlp}, norm={config.norm}: "
                     "Hugging Face has GPT2LMHeadModel (learned, gelu, layernorm) and "
                     "LlamaForCausalLM (rope, swiglu, rmsnorm), not a mix")


def config_to_hf(config: GPTConfig, special_ids: dict) -> dict:
    """config.json for `AutoModelForCausalLM`; `special_ids` may give bos/eos token ids."""
    common = {"vocab_size": config.vocab_size, "tie_word_embeddings": config.tie_weights,
              "torch_dtype": "float32", **special_ids}
    if hf_kind(config) == "gpt2":
        d = config.dropout
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                "n_positions": config.block_size, "n_ctx": config.block_size,
                "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head,
                "n_inner": None, "activation_function": "gelu_new",
                "layer_norm_epsilon": LAYERNORM_EPS, "resid_pdrop": d, "embd_pdrop": d,
                "attn_pdrop": d, **common}
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": config.n_embd, "intermediate_size": config.mlp_hidden,
            "num_hidden_layers": config.n_layer, "num_attention_heads": config.n_head,
            "num_key_value_heads": config.n_head, "head_dim": config.head_size,
            "hidden_act": "silu", "max_position_embeddings": config.block_size,
            "rms_norm_eps": RMSNORM_EPS, "rope_theta": config.rope_base,
            "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base},
            "attention_bias": config.bias, "attention_dropout": config.dropout,
            "mlp_bias": False, **common}


# ---------------------------------------------------------------------------------------------
# tensor names
# ---------------------------------------------------------------------------------------------
_LLAMA_NAMES = {  # ours (inside transformer.h.{i}) -> HF (inside model.layers.{i}), transposed
    "attn.c_proj": "self_attn.o_proj", "mlp.c_fc": "mlp.gate_proj", "mlp.c_up": "mlp.up_proj",
    "mlp.c_proj": "mlp.down_proj"}
_LLAMA_NORMS = {"ln_1": "input_layernorm", "ln_2": "post_attention_layernorm"}
_QKV = ("q_proj", "k_proj", "v_proj")


def to_hf_sources(config: GPTConfig, name: str):
    """How our tensor `name` is made from HF tensors: (list of HF names, how) where how is
    'same' (one tensor as it is), 'T' (one tensor transposed), 'qkv' (three (out, in) matrices
    transposed and put side by side; or three biases concatenated)."""
    if hf_kind(config) == "gpt2" or name == "lm_head.weight":
        return [name], "same"
    parts = name.split(".")
    if name == "transformer.wte.weight":
        return ["model.embed_tokens.weight"], "same"
    if parts[1] == "ln_f":
        return ["model.norm.weight"], "same"
    i, local, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
    base = f"model.layers.{i}"
    if local in _LLAMA_NORMS:
        return [f"{base}.{_LLAMA_NORMS[local]}.weight"], "same"
    if local == "attn.c_attn":
        return [f"{base}.self_attn.{p}.{kind}" for p in _QKV], "qkv"
    return [f"{base}.{_LLAMA_NAMES[local]}.{kind}"], ("T" if kind == "weight" else "same")


def build(how: str, arrays: list) -> np.ndarray:
    """Our tensor from the HF tensors (`how` as in `to_hf_sources`)."""
    if how == "same":
        return arrays[0]
    if how == "T":
        return arrays[0].T
    if arrays[0].ndim == 1:  # q, k, v biases
        return np.concatenate(arrays)
    return np.concatenate([a.T for a in arrays], axis=1)


def split(how: str, ours: np.ndarray) -> list:
    """The inverse of `build`: the HF tensors from ours."""
    if how == "same":
        return [ours]
    if how == "T":
        return [ours.T]
    if ours.ndim == 1:
        return np.split(ours, 3)
    return [part.T for part in np.split(ours, 3, axis=1)]
