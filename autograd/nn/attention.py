"""Causal multi-head self-attention, as in GPT-2.

For a sequence x of shape (B, T, C), with C = n_embd split over H = n_head heads of size
hd = C / H:

    q, k, v = split(x @ W_attn + b_attn, 3)                 # c_attn: one matmul for all three
    each reshaped (B, T, C) -> (B, T, H, hd) -> (B, H, T, hd)
    y = softmax(q k^T / sqrt(hd), masked so position t sees only positions <= t) v
    y reshaped back (B, H, T, hd) -> (B, T, H, hd) -> (B, T, C)
    out = y @ W_proj + b_proj                                # c_proj

Every head looks at the sequence with its own slice of q, k and v; the output projection mixes
the heads back together. Without an extra mask, the split, the attention and the merge are one
fused op, `F.qkv_attention`; with a mask, the module splits and merges around
`F.scaled_dot_product_attention`.
"""

from __future__ import annotations

from autograd import functional as F
from autograd.nn.layers import Dropout, Linear
from autograd.nn.module import Module


class CausalSelfAttention(Module):
    """GPT-2's attention block: `c_attn` = Linear(n_embd, 3*n_embd) producing q, k and v side by
    side, `c_proj` = Linear(n_embd, n_embd), dropout on the attention weights and on the output.

    The parameter names (c_attn.weight, c_attn.bias, c_proj.weight, c_proj.bias) and shapes match
    GPT-2's checkpoint, and so does the init: normal(0, 0.02) weights. GPT-2 also scales the
    init std of c_proj.weight by 1/sqrt(2 * n_layer) (each block adds to the residual stream
    twice); a model that wants this re-draws it, e.g.
    `attn.c_proj.weight.data[...] *= (2 * n_layer) ** -0.5`.

    `rng` (a numpy Generator) draws the initial weights and then both dropout masks, so a
    module built from a seeded generator trains reproducibly; None uses the layers' default
    generator for the weights and a fresh one for the masks. (The GPT in tinyllm/model.py has
    its own attention, with RoPE and a KV cache; this is the plain GPT-2 block, for examples
    and for models of your own.)
    """

    def __init__(self, n_embd, n_head, bias=True, dropout=0.0, *, dtype=None, rng=None):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.n_embd, self.n_head, self.dropout, self.rng = n_embd, n_head, dropout, rng
        self.c_attn = Linear(n_embd, 3 * n_embd, bias, dtype=dtype, rng=rng, std=0.02)
        self.c_proj = Linear(n_embd, n_embd, bias, dtype=dtype, rng=rng, std=0.02)
        self.resid_dropout = Dropout(dropout, rng=rng)

    def forward(self, x, mask=None):
        """x: (B, T, n_embd). `mask` (optional, boolean, True = may attend, broadcastable to
        (B, H, T, T)) is combined with the causal mask, e.g. to hide padding."""
        B, T, C = x.shape
        H = self.n_head
        hd = C // H
        dropout_p = self.dropout if self.training else 0.0
        if mask is None:  # the same in one op, which reads the heads in place (no copies)
            y = F.qkv_attention(self.c_attn(x), H, dropout_p=dropout_p, rng=self.rng)
            return self.resid_dropout(self.c_proj(y))
        q, k, v = self.c_attn(x).split(3, axis=-1)  # three (B, T, C) slices

        def heads(t):  # (B, T, C) -> (B, H, T, hd)
            return t.reshape(B, T, H, hd).transpose(0, 2, 1, 3)

        y = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), causal=True, mask=mask, dropout_p=dropout_p, rng=self.rng,
        )
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # put the heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def extra_repr(self):
        return f"n_embd={self.n_embd}, n_head={self.n_head}, dropout={self.dropout}"
