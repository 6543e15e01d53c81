"""The public functional namespace: `from autograd import functional as F`.

Thin wrappers that turn arguments into tensors and call the ops; every op's forward formula and
VJP are in its docstring in `autograd/ops/`.
"""

from __future__ import annotations

from autograd.ops.elementwise import where
from autograd.ops.shape import concatenate, split, stack
from autograd.tensor import Tensor


def relu(x: Tensor) -> Tensor:
    return x.relu()


def gelu(x: Tensor) -> Tensor:
    """GELU in its tanh form, as GPT-2."""
    return x.gelu()


def silu(x: Tensor) -> Tensor:
    return x.silu()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def logsumexp(x: Tensor, axis=-1, keepdims=False) -> Tensor:
    return x.logsumexp(axis=axis, keepdims=keepdims)


__all__ = ["relu", "gelu", "silu", "sigmoid", "tanh", "logsumexp", "where", "concatenate",
           "split", "stack"]
