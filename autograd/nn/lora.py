"""LoRA: fine-tune a linear layer by learning a low-rank change to its weight.

A pre-trained `Linear` computes y = x @ W + b with W of shape (in, out). Fine-tuning all of W
learns in * out numbers per layer. LoRA (Hu et al., 2021) freezes W and learns the change as a
product of two thin matrices instead:

    y = x @ W + b  +  (alpha / r) * dropout(x) @ A @ B          A: (in, r),  B: (r, out)

so the layer learns r * (in + out) numbers, a few percent of in * out for a small rank r.

Shapes. The paper writes the update as W' = W + B A with A (r x in) and B (out x r), because
PyTorch stores a weight as (out, in). This engine stores weights as (in, out) (GPT-2's Conv1D
layout, see `Linear`), so here every matrix is the transpose of the paper's: `lora_A` is
(in, r) and `lora_B` is (r, out), the update is  delta_W = (alpha / r) * A @ B  of shape
(in, out), and the forward needs no transposes.

Initialisation. A is random (normal, std 1/sqrt(in), so x @ A keeps the scale of x) and B is
zero, so delta_W = 0 and the adapted model starts as exactly the pre-trained one. B cannot be
random as well: then the model would start from a randomly perturbed W and forget before it
learns. Nor can both be zero: the gradient of B is (x @ A)^T g and that of A is x^T g B^T, so
with A = B = 0 both gradients are zero forever. With A random and B zero, B moves on the first
step and A follows.

The scale alpha / r lets you change the rank without retuning the learning rate: the update's
size stays about the same when r doubles.

Merging. After training, `merge()` adds delta_W into W, so the layer is again a plain Linear
with no extra cost at inference; `unmerge()` takes it out again (equal to the original W up to
float rounding). `disable_adapters(model)` runs the model as if it had no adapters: that is the
frozen reference model DPO needs, without a second copy of the weights.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

from autograd import blas
from autograd import functional as F
from autograd.function import Function
from autograd.grad_mode import no_grad
from autograd.nn.layers import Linear, _normal, _zeros
from autograd.nn.module import Module


def _rows(a):
    """View (..., n) as (rows, n): one 2-D matrix product instead of a batched one."""
    return a.reshape(-1, a.shape[-1])


class LoRALinearFn(Function):
    """out = x @ w + b + s * (h @ a) @ bm, one op (h is the adapter's input: x, or x after
    dropout; w (in, out) frozen, a (in, r), bm (r, out), s = alpha / r).

    With u = s * (h @ a) (rows, r), the VJP for an upstream g (rows, out):
        dbm = u^T g          du = g bm^T          da = s * h^T du          dh = s * du a^T
        dx  = g w^T          dw = x^T g           db = sum of g over rows

    Why one op: written as x @ w + (h @ a) @ bm with three ops, the graph would keep two
    arrays of the output's size alive per layer (x @ w and the update) until the backward;
    this op keeps only u, which is r wide. With a frozen w, dw is never computed."""

    rule = "lora: dbm = u^T g, da = s h^T (g bm^T), dh = s (g bm^T) a^T, dx = g w^T"

    @staticmethod
    def forward(ctx, x, h, w, a, bm, b=None, *, scale):
        u = (_rows(h) @ a) * scale
        # The base product exactly as nn.Linear makes it (bias first, gemm adds onto it), so a
        # fresh adapter (B = 0) gives the base layer's output to the last bit on any BLAS.
        out = blas.matmul(_rows(x), w, bias=b)
        out += u @ bm
        ctx.save_for_backward(x, h, w, a, bm, u)
        ctx.scale = scale
        return out.reshape(*x.shape[:-1], w.shape[1])

    @staticmethod
    def backward(ctx, g):
        x, h, w, a, bm, u = ctx.saved
        need, s = ctx.needs_input_grad, ctx.scale
        g2 = _rows(g)
        gu = g2 @ bm.T  # (rows, r)
        gx = (g2 @ w.T).reshape(x.shape) if need[0] else None
        gh = ((gu @ a.T) * s).reshape(h.shape) if need[1] else None
        gw = _rows(x).T @ g2 if need[2] else None
        ga = (_rows(h).T @ gu) * s if need[3] else None
        gbm = u.T @ g2 if need[4] else None
        if len(need) == 5:
            return gx, gh, gw, ga, gbm
        return gx, gh, gw, ga, gbm, (g2.sum(axis=0) if need[5] else None)


class LoRALinear(Linear):
    """A `Linear` with a frozen weight (and bias) and a trainable low-rank update A @ B.

    Build it around an existing layer with `LoRALinear.from_linear(linear, rank, alpha)`: the
    new layer shares that layer's `weight` and `bias` Parameters (no copy) and freezes them.
    Its parameters are named `weight`, `bias`, `lora_A`, `lora_B`, so the base weights keep
    their names in a state dict.
    """

    def __init__(self, in_features, out_features, bias=True, *, rank=8, alpha=16.0,
                 dropout=0.0, dtype=None, rng=None, std=0.02):
        super().__init__(in_features, out_features, bias, dtype=dtype, rng=rng, std=std)
        self._add_adapter(rank, alpha, dropout, self.weight.dtype, rng)

    @classmethod
    def from_linear(cls, linear, rank=8, alpha=16.0, dropout=0.0, rng=None):
        """Wrap `linear` (an `nn.Linear`): share its weight and bias, freeze them, add A and B."""
        layer = cls.__new__(cls)
        Module.__init__(layer)  # not Linear.__init__: the weights come from `linear`
        layer.in_features, layer.out_features = linear.in_features, linear.out_features
        layer.weight, layer.bias = linear.weight, linear.bias
        layer.training = linear.training
        layer._add_adapter(rank, alpha, dropout, linear.weight.dtype, rng)
        return layer

    def _add_adapter(self, rank, alpha, dropout, dtype, rng):
        if int(rank) != rank or rank < 1:
            raise ValueError(f"LoRA: rank must be a positive integer, got {rank}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA: dropout must be in [0, 1), got {dropout}")
        self.rank, self.alpha, self.dropout = int(rank), float(alpha), float(dropout)
        self.scale = self.alpha / self.rank
        self.dropout_rng = rng
        self.weight.requires_grad_(False)  # the pre-trained weights are frozen
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.lora_A = _normal((self.in_features, self.rank), 1.0 / math.sqrt(self.in_features),
                              dtype, rng)
        self.lora_B = _zeros((self.rank, self.out_features), dtype)
        self.adapter_enabled = True
        self.merged = False

    # ---- the forward ---------------------------------------------------------------------------
    def forward(self, x):
        if self.merged or not self.adapter_enabled:
            # merged: W already holds the update; disabled: the base layer alone
            return F.linear(x, self.weight, self.bias)
        h = F.dropout(x, self.dropout, self.training, rng=self.dropout_rng)
        params = (self.weight, self.lora_A, self.lora_B)
        if self.bias is not None:
            params += (self.bias,)
        return LoRALinearFn.apply(x, h, *params, scale=self.scale)

    def delta_weight(self):
        """The update this adapter adds to W: (alpha / r) * A @ B, shape (in, out), an array."""
        return (self.lora_A.data @ self.lora_B.data) * self.weight.dtype.type(self.scale)

    # ---- merging -------------------------------------------------------------------------------
    @no_grad()
    def merge(self):
        """W <- W + delta_W, in place: the layer then costs what a plain Linear costs."""
        if self.merged:
            raise RuntimeError("LoRA: this layer is already merged")
        self.weight.data = self.weight.data + self.delta_weight()
        self.merged = True
        return self

    @no_grad()
    def unmerge(self):
        """W <- W - delta_W: back to the frozen base weight (up to float rounding)."""
        if not self.merged:
            raise RuntimeError("LoRA: this layer is not merged")
        self.weight.data = self.weight.data - self.delta_weight()
        self.merged = False
        return self

    def to_linear(self):
        """A plain `Linear` with the update merged in (a copy; this layer is left as it is)."""
        plain = Linear.__new__(Linear)
        Module.__init__(plain)
        plain.in_features, plain.out_features = self.in_features, self.out_features
        weight = self.weight.data if self.merged else self.weight.data + self.delta_weight()
        plain.weight = type(self.weight)(weight.copy())
        plain.bias = None if self.bias is None else type(self.bias)(self.bias.data.copy())
        plain.training = self.training
        return plain

    def extra_repr(self):
        return (super().extra_repr() + f", rank={self.rank}, alpha={self.alpha}, "
                f"dropout={self.dropout}" + (", merged" if self.merged else ""))


def lora_layers(module):
    """(dotted name, LoRALinear) for every LoRA layer in `module`'s tree."""
    return [(n, m) for n, m in module.named_modules() if isinstance(m, LoRALinear)]


@contextmanager
def disable_adapters(module):
    """Within the block, every LoRA layer of `module` computes its base layer alone:
    the model before fine-tuning, with no second copy of its weights."""
    layers = [m for _, m in lora_layers(module)]
    if any(m.merged for m in layers):
        raise RuntimeError("LoRA: cannot disable merged adapters (unmerge them first)")
    before = [m.adapter_enabled for m in layers]
    for m in layers:
        m.adapter_enabled = False
    try:
        yield module
    finally:
        for m, flag in zip(layers, before):
            m.adapter_enabled = flag
