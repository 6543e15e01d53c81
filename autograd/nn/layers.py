"""The layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout.

Each layer owns its parameters and calls one op from `autograd.functional` in `forward`; the
maths (and the hand-written backward) lives in the op, the bookkeeping lives here.

Initialisation:

    Linear.weight                     normal(0, 1/sqrt(in_features)), or normal(0, std) if given
    Embedding.weight                  normal(0, 0.02)
    Linear.bias                       zeros
    LayerNorm.weight, RMSNorm.weight  ones   (the norm starts as a plain normalisation)
    LayerNorm.bias                    zeros

Random numbers come from the `rng` argument (a `numpy.random.Generator`) when given, else from
this module's default generator, seeded with 0 at import and reset by `manual_seed(seed)`; so
building the same model twice in a fresh process gives the same weights. Values are drawn in
float64 on the CPU and then cast, so a float32 and a float64 model made from the same seed start
from the same weights (up to rounding), and then moved to the default device.
"""

from __future__ import annotations

import math

import numpy as np

from autograd import backend
from autograd import functional as F
from autograd.nn.module import Module, Parameter
from autograd.tensor import get_default_dtype

_default_rng = np.random.default_rng(0)


def manual_seed(seed):
    """Reset the default generator that layers draw their initial weights from."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def default_rng():
    """The generator layers use when no `rng` is passed."""
    return _default_rng


def _dtype(dtype):
    return np.dtype(get_default_dtype() if dtype is None else dtype)


def _param(array, dtype):
    """A Parameter holding `array` cast to `dtype`, on the default device."""
    array = backend.to_device(array.astype(dtype), backend.get_default_device())
    return Parameter(array)


def _normal(shape, std, dtype=None, rng=None):
    """A Parameter of the given shape drawn from normal(0, std)."""
    rng = _default_rng if rng is None else rng
    return _param(rng.standard_normal(shape) * std, _dtype(dtype))


def _zeros(shape, dtype=None):
    return _param(np.zeros(shape), _dtype(dtype))


def _ones(shape, dtype=None):
    return _param(np.ones(shape), _dtype(dtype))


class Linear(Module):
    """y = x @ weight + bias, over the last axis of x.

    `weight` has shape (in_features, out_features), as GPT-2's Conv1D stores it (PyTorch's
    nn.Linear stores the transpose), so `x @ weight` needs no transpose and GPT-2 checkpoints
    load as they are. `std` is the init standard deviation of the weight. The default, None,
    gives 1/sqrt(in_features): each output then sums `in_features` products and keeps about
    the scale of its inputs, whatever the width (PyTorch's default also scales with the fan-in).
    A transformer usually asks for a fixed small std instead (GPT-2: std=0.02).
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=None, rng=None, std=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        std = 1.0 / math.sqrt(in_features) if std is None else std
        self.weight = _normal((in_features, out_features), std, dtype, rng)
        self.bias = _zeros((out_features,), dtype) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """A lookup table: row `i` of `weight` (shape (num, dim)) is the vector of id `i`.
    `forward(ids)` takes an integer array (or Tensor) of any shape and adds an axis of size dim.
    The backward adds the gradients of repeated ids (see the embedding op)."""

    def __init__(self, num, dim, *, dtype=None, rng=None, std=0.02):
        super().__init__()
        self.num, self.dim = num, dim
        self.weight = _normal((num, dim), std, dtype, rng)

    def forward(self, ids):
        return F.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num}, {self.dim}"


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis (size `dim`).
    GPT-2 uses eps 1e-5; `bias=False` drops the shift (as some newer models do)."""

    def __init__(self, dim, eps=1e-5, bias=True, *, dtype=None):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = _ones((dim,), dtype)
        self.bias = _zeros((dim,), dtype) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, eps=self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(Module):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis: LayerNorm without centring
    and without a bias (LLaMA's choice; cheaper, and works as well in practice)."""

    def __init__(self, dim, eps=1e-6, *, dtype=None):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = _ones((dim,), dtype)

    def forward(self, x):
        return F.rms_norm(x, self.weight, eps=self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


class Dropout(Module):
    """In training mode, zero each element with probability p and scale the survivors by
    1/(1-p), so the expected value is unchanged; in eval mode, the identity. It has no
    parameters, hence no dtype. `rng` (a numpy Generator) makes the masks reproducible; None
    leaves the choice of generator to `F.dropout`."""

    def __init__(self, p=0.1, *, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x  # nothing to drop: skip the op (and its mask) entirely
        return F.dropout(x, self.p, self.training, rng=self.rng)

    def extra_repr(self):
        return f"p={self.p}"
