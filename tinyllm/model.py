"""A decoder-only transformer (GPT), in one file.

    idx (B, T) token ids
      -> token embedding wte (+ learned position embedding wpe, unless RoPE)
      -> n_layer blocks:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))      (pre-norm)
      -> ln_f -> logits = x @ wte^T (the output layer is tied to the token embedding)

Parameter names and shapes follow GPT-2's checkpoint (transformer.wte, transformer.wpe,
transformer.h.{i}.ln_1, .attn.c_attn, .attn.c_proj, .ln_2, .mlp.c_fc, .mlp.c_proj,
transformer.ln_f; linear weights stored (in, out)), so `model.state_dict()` maps one to one
onto a GPT-2 file. The options of `GPTConfig` switch to the newer choices (RoPE, SwiGLU,
RMSNorm) one at a time, which is how you see what each one buys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

import autograd as ag
from autograd import functional as F
from autograd import nn

# The settings that take one of a few names (the command line lists them as choices).
CONFIG_CHOICES = {"pos": ("learned", "rope"), "mlp": ("gelu", "swiglu"),
                  "norm": ("layernorm", "rmsnorm")}


@dataclass
class GPTConfig:
    vocab_size: int = 1024
    block_size: int = 128  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as GPT-2
    pos: str = "learned"  # "learned" (GPT-2) or "rope" (rotary, LLaMA)
    mlp: str = "gelu"  # "gelu" (GPT-2, 4x wide) or "swiglu" (LLaMA, gated, ~8/3 x wide)
    norm: str = "layernorm"  # "layernorm" (GPT-2, eps 1e-5) or "rmsnorm"
    tie_weights: bool = True  # the output layer reuses the token embedding
    dtype: str = "float32"
    rope_base: float = 10000.0

    def __post_init__(self):
        for name, allowed in CONFIG_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig.{name} must be one of {allowed}, "
                                 f"got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError("rope needs an even head size (n_embd / n_head)")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be positive, got {getattr(self, name)}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig fields: {unknown}")
        return cls(**d)

    @property
    def head_size(self):
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self):
        if self.mlp == "gelu":
            return 4 * self.n_embd
        return 16 * math.ceil(8 * self.n_embd / 3 / 16)  # same parameters as 4x with 3 matrices


def _norm(config):
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, dtype=config.dtype)
    return nn.LayerNorm(config.n_embd, bias=config.bias, dtype=config.dtype)


class Attention(nn.Module):
    """Causal multi-head self-attention with an optional KV cache (for generation)."""

    def __init__(self, config, rng):
        super().__init__()
        self.config, self.rng = config, rng
        C = config.n_embd
        self.c_attn = nn.Linear(C, 3 * C, config.bias, dtype=config.dtype, rng=rng, std=0.02)
        self.c_proj = nn.Linear(C, C, config.bias, dtype=config.dtype, rng=rng,
                                std=0.02 / math.sqrt(2 * config.n_layer))  # GPT-2's residual scaling

    def forward(self, x, positions, cache=None):
        B, T, C = x.shape
        H, hd = self.config.n_head, self.config.head_size
        dropout = self.config.dropout if self.training else 0.0
        if self.config.pos == "learned" and cache is None:
            # Training and scoring: one op splits q, k, v into heads, attends and merges the
            # heads, reading and writing the (B, T, 3C) projection in place (no copies).
            y = F.qkv_attention(self.c_attn(x), H, dropout_p=dropout, rng=self.rng)
            return self.c_proj(y)
        # (B, T, 3C) -> (3, B, H, T, hd): q, k and v for every head in one reshape.
        qkv = self.c_attn(x).reshape(B, T, 3, H, hd).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.config.pos == "rope":
            q = F.rotary_embedding(q, positions, self.config.rope_base)
            k = F.rotary_embedding(k, positions, self.config.rope_base)
        if cache is not None:  # generation: keys and values of earlier steps are kept
            if cache.get("k") is not None:
                k = ag.concatenate([cache["k"], k], axis=2)
                v = ag.concatenate([cache["v"], v], axis=2)
            cache["k"], cache["v"] = k.detach(), v.detach()
        y = F.scaled_dot_product_attention(q, k, v, causal=True, dropout_p=dropout, rng=self.rng)
        return self.c_proj(y.transpose(0, 2, 1, 3).reshape(B, T, C))


class MLP(nn.Module):
    """GELU (tanh form): c_proj(gelu(c_fc(x))); SwiGLU: c_proj(silu(x W_fc) * (x W_up))."""

    def __init__(self, config, rng):
        super().__init__()
        self.config = config
        C, Hd = config.n_embd, config.mlp_hidden
        bias = config.bias and config.mlp == "gelu"  # the gated form has no biases (as LLaMA)
        self.c_fc = nn.Linear(C, Hd, bias, dtype=config.dtype, rng=rng, std=0.02)
        if config.mlp == "swiglu":
            self.c_up = nn.Linear(C, Hd, False, dtype=config.dtype, rng=rng, std=0.02)
        self.c_proj = nn.Linear(Hd, C, bias, dtype=config.dtype, rng=rng,
                                std=0.02 / math.sqrt(2 * config.n_layer))

    def forward(self, x):
        if self.config.mlp == "swiglu":
            return self.c_proj(F.swiglu(x, self.c_fc.weight, self.c_up.weight))
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    """One pre-norm transformer block: attention, then MLP, each added to the residual stream."""

    def __init__(self, config, rng):
        super().__init__()
        self.ln_1 = _norm(config)
        self.attn = Attention(config, rng)
        self.ln_2 = _norm(config)
        self.mlp = MLP(config, rng)
        self.drop = nn.Dropout(config.dropout, rng=rng)

    def forward(self, x, positions, cache=None):
        x = x + self.drop(self.attn(self.ln_1(x), positions, cache))
        return x + self.drop(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    """The `transformer.*` part of GPT-2's names: embeddings, blocks and the final norm."""

    def __init__(self, config, rng):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, dtype=config.dtype, rng=rng)
        if config.pos == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd, dtype=config.dtype,
                                    rng=rng, std=0.01)
        self.drop = nn.Dropout(config.dropout, rng=rng)
        self.h = nn.ModuleList([Block(config, rng) for _ in range(config.n_layer)])
        self.ln_f = _norm(config)


def weight_shapes(config: GPTConfig) -> dict:
    """{name: shape} of `GPT(config).state_dict()`, without building the model (the tests
    check it against the real one): what a checkpoint must hold before a model is built for
    it, and what a Hugging Face export writes."""
    C, V, Hd = config.n_embd, config.vocab_size, config.mlp_hidden
    norm_bias = config.bias and config.norm == "layernorm"
    mlp_bias = config.bias and config.mlp == "gelu"

    def norm(prefix):
        return {f"{prefix}.weight": (C,), **({f"{prefix}.bias": (C,)} if norm_bias else {})}

    def linear(prefix, n_in, n_out, bias):
        return {f"{prefix}.weight": (n_in, n_out), **({f"{prefix}.bias": (n_out,)} if bias else {})}

    shapes = {"transformer.wte.weight": (V, C)}
    if config.pos == "learned":
        shapes["transformer.wpe.weight"] = (config.block_size, C)
    for i in range(config.n_layer):
        p = f"transformer.h.{i}"
        shapes.update(norm(f"{p}.ln_1"))
        shapes.update(linear(f"{p}.attn.c_attn", C, 3 * C, config.bias))
        shapes.update(linear(f"{p}.attn.c_proj", C, C, config.bias))
        shapes.update(norm(f"{p}.ln_2"))
        shapes.update(linear(f"{p}.mlp.c_fc", C, Hd, mlp_bias))
        if config.mlp == "swiglu":
            shapes.update(linear(f"{p}.mlp.c_up", C, Hd, False))
        shapes.update(linear(f"{p}.mlp.c_proj", Hd, C, mlp_bias))
    shapes.update(norm("transformer.ln_f"))
    if not config.tie_weights:
        shapes["lm_head.weight"] = (V, C)
    return shapes


class GPT(nn.Module):
    """The model. `model(idx, targets=None)` returns `(logits, loss)`; see the module docstring."""

    def __init__(self, config: GPTConfig, seed: int = 0):
        super().__init__()
        self.config = config
        rng = np.random.default_rng(seed)
        self.rng = rng  # also drives dropout; its state is saved in checkpoints
        self.transformer = Transformer(config, rng)
        if not config.tie_weights:
            # Stored (vocab, n_embd) like the embedding, as GPT-2's lm_head.
            self.lm_head = nn.Embedding(config.vocab_size, config.n_embd, dtype=config.dtype,
                                        rng=rng)

    def output_weight(self):
        head = self.transformer.wte if self.config.tie_weights else self.lm_head
        return head.weight

    def forward(self, idx, targets=None, cache=None, start_pos=0, last_only=False,
                return_logits=True):
        """idx: integer array (B, T). targets: (B, T) or None; ids equal to -100 are ignored.
        `cache` (a list with one dict per layer) and `start_pos` serve generation; `last_only`
        computes logits for the last position only. Returns (logits, loss or None); with
        targets and `return_logits=False` (training), (None, loss), computed by the fused output
        layer + loss that never holds the (B, T, V) logits (less memory, same value)."""
        idx = idx.data if isinstance(idx, ag.Tensor) else idx
        if idx.ndim != 2:
            raise ValueError(f"GPT expects token ids of shape (B, T), got {tuple(idx.shape)}")
        B, T = idx.shape
        if self.config.pos == "learned" and start_pos + T > self.config.block_size:
            raise ValueError(f"sequence of length {start_pos + T} is longer than block_size "
                             f"{self.config.block_size}")
        positions = np.arange(start_pos, start_pos + T)
        t = self.transformer
        x = t.wte(idx)
        if self.config.pos == "learned":
            x = x + t.wpe(positions)
        x = t.drop(x)
        for i, block in enumerate(t.h):
            x = block(x, positions, None if cache is None else cache[i])
        x = t.ln_f(x)
        if last_only:
            x = x[:, -1:, :]
        if targets is not None and not return_logits:
            return None, F.lm_head_cross_entropy(x, self.output_weight(), targets)
        logits = F.linear(x, self.output_weight().T)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def num_parameters(self, non_embedding=False):
        n = super().num_parameters()
        if non_embedding and self.config.pos == "learned":
            n -= self.transformer.wpe.weight.size
        return n

    def estimate_flops_per_token(self, seq_len=None):
        """Training FLOPs per token: 6N for the matrix products over the N parameters (forward
        2N, backward 4N) plus 12 L T C for attention's two (T x T) products (PaLM's estimate)."""
        c = self.config
        T = c.block_size if seq_len is None else seq_len
        return 6 * self.num_parameters(non_embedding=True) + 12 * c.n_layer * T * c.n_embd

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 stop_tokens=None, seed=None, **options):
        """Continue each row of `idx` (B, T) by up to `max_new_tokens` sampled tokens; returns
        the ids including the prompt. Greedy when temperature == 0 or top_k == 1. A row that
        stops is padded with -1; `options`: `pad_id`, `window` (see tinyllm.generate.stream)."""
        from tinyllm.generate import generate

        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, stop_tokens=stop_tokens, seed=seed, **options)

    def stream(self, idx, max_new_tokens, **sampling):
        """Like `generate`, but yields each new column of token ids (shape (B,)) as it is made."""
        from tinyllm.generate import stream

        return stream(self, idx, max_new_tokens, **sampling)
