"""The public functional namespace: `from autograd import functional as F`.

Thin wrappers that accept tensors or arrays and call the ops; each op's forward formula and
vector-Jacobian product are in its docstring (autograd/ops/), printable with
`autograd.debug.explain`.
"""

from __future__ import annotations

import math

import numpy as np

from autograd.backend import device_of, get_array_module, is_cupy_array, to_device
from autograd.ops import nn as _nn
from autograd.ops.attention import ScaledDotProductAttention
from autograd.ops.causal_attention import QKVAttention
from autograd.ops.elementwise import where
from autograd.ops.lm_head import LMHeadCrossEntropy
from autograd.ops.shape import concatenate, split, stack
from autograd.ops.softmax import CrossEntropy, LogSoftmax, Softmax
from autograd.tensor import Tensor


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _host_index_to(index, like, what, num=None, ignore=None):
    """Ids, targets and masks are often made on the host (a data loader, np.arange); move them
    to the device of the tensor they index, checking integer ids (other than `ignore`) first,
    while they are still on the host (afterwards a check would wait for the GPU)."""
    index = _data(index)
    if index is None or not is_cupy_array(like.data) or is_cupy_array(index):
        return index
    if num is not None:
        _nn.check_ids(index if ignore is None else index[index != ignore], num, what)
    return to_device(index, device_of(like.data))


def linear(x, w, b=None):
    """x @ w + b with w of shape (in, out) (GPT-2's Conv1D layout)."""
    return _nn.Linear.apply(x, w) if b is None else _nn.Linear.apply(x, w, b)


def embedding(ids, table):
    """Rows of `table` (num, dim) picked by integer `ids` of any shape."""
    return _nn.Embedding.apply(_host_index_to(ids, table, "embedding: ids", table.shape[0]), table)


def layer_norm(x, gamma, beta=None, eps=1e-5):
    """Normalise the last axis to zero mean and unit variance, then scale and shift."""
    if beta is None:
        return _nn.LayerNorm.apply(x, gamma, eps=eps)
    return _nn.LayerNorm.apply(x, gamma, beta, eps=eps)


def rms_norm(x, gamma, eps=1e-6):
    """Divide the last axis by its root mean square, then scale."""
    return _nn.RMSNorm.apply(x, gamma, eps=eps)


def softmax(x, axis=-1, mask=None):
    """Softmax along `axis`; `mask` is boolean, True = keep (masked positions are exactly 0)."""
    return Softmax.apply(x, axis=axis, mask=_host_index_to(mask, x, "mask"))


def log_softmax(x, axis=-1, mask=None):
    """Log-softmax along `axis`; masked positions are 0 in value and gradient."""
    return LogSoftmax.apply(x, axis=axis, mask=_host_index_to(mask, x, "mask"))


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0):
    """Mean cross-entropy of integer `targets` under `logits` (..., V), over the targets that are
    not `ignore_index`."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
    targets = _host_index_to(targets, logits, "cross_entropy: targets", logits.shape[-1],
                             ignore=ignore_index)
    return CrossEntropy.apply(logits, targets, ignore_index=ignore_index,
                              label_smoothing=float(label_smoothing))


def lm_head_cross_entropy(x, weight, targets, ignore_index=-100, label_smoothing=0.0,
                          chunk_rows=None):
    """cross_entropy(linear(x, weight.T), targets) for hidden states `x` (..., C) and an output
    weight (V, C), computed a chunk of rows at a time so the (..., V) logits are never held."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"lm_head_cross_entropy: label_smoothing must be in [0, 1), got "
                         f"{label_smoothing}")
    targets = _host_index_to(targets, x, "lm_head_cross_entropy: targets", weight.shape[0],
                             ignore=ignore_index)
    return LMHeadCrossEntropy.apply(x, weight, targets, ignore_index=ignore_index,
                                    label_smoothing=float(label_smoothing), chunk_rows=chunk_rows)


def dropout(x, p=0.1, training=True, rng=None):
    """Zero each element with probability p and scale the rest by 1/(1-p) (when training)."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    return _nn.Dropout.apply(x, keep=_keep_mask(x.shape, get_array_module(x.data), p, rng), p=p)


def _keep_mask(shape, xp, p, rng):
    """A boolean mask, True with probability 1 - p (NumPy: from `rng`; CuPy: its own RNG).

    On NumPy each element is one 16-bit random integer u, kept when u >= round(p * 2^16): the
    generator's raw bits, three times cheaper than drawing floats, and the keep probability is
    1 - p to within 2^-17, far inside the sampling noise of any mask."""
    if xp is np:
        rng = rng or np.random.default_rng()
        n = math.prod(shape)
        bits = rng.bit_generator.random_raw(-(-n // 4)).view(np.uint16)[:n]
        return (bits >= round(p * 65536)).reshape(shape)
    return xp.random.random(shape, dtype=xp.float32) >= p


def _attention_keep_mask(lead, T, S, xp, p, rng):
    """A dropout mask for attention probabilities, shape (*lead, T, S), laid out keys by queries
    in memory (a transposed view): the attention kernels keep their scores that way round, so
    they read the mask's tiles contiguously."""
    return xp.swapaxes(_keep_mask((*lead, S, T), xp, p, rng), -1, -2)


def scaled_dot_product_attention(q, k, v, causal=True, mask=None, dropout_p=0.0, rng=None):
    """softmax(q k^T / sqrt(d) + masks) @ v over (batch, heads, time, head_dim), one fused op.
    `mask` is boolean, True = keep, broadcastable to (B, H, T, S)."""
    keep = None
    if dropout_p:
        lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        keep = _attention_keep_mask(lead, q.shape[-2], k.shape[-2], get_array_module(q.data),
                                    dropout_p, rng)
    mask = _host_index_to(mask, q, "mask")
    return ScaledDotProductAttention.apply(q, k, v, causal=causal, mask=mask, keep=keep,
                                           dropout_p=dropout_p)


def qkv_attention(qkv, n_head, dropout_p=0.0, rng=None):
    """Causal self-attention from the output of a fused q/k/v projection, one op: qkv (B, T, 3C)
    holds q, k and v side by side, each split into `n_head` heads; returns (B, T, C), the heads
    side by side again. The same as splitting, reshaping to (B, H, T, d), calling
    scaled_dot_product_attention(causal=True) and merging the heads, without the copies."""
    keep = None
    if dropout_p:
        B, T = qkv.shape[:2]
        keep = _attention_keep_mask((B, n_head), T, T, get_array_module(qkv.data), dropout_p, rng)
    return QKVAttention.apply(qkv, n_head=n_head, keep=keep, dropout_p=dropout_p)


def rotary_embedding(x, positions, base=10000.0):
    """Rotate feature pairs of x (..., T, d) by angles pos * base^(-2i/d) (RoPE)."""
    return _nn.RotaryEmbedding.apply(x, positions=np.asarray(_data(positions)), base=base)


def swiglu(x, w_gate, w_up):
    """silu(x @ w_gate) * (x @ w_up), the gated MLP of LLaMA-style models."""
    return _nn.SwiGLU.apply(x, w_gate, w_up)


def relu(x):
    return x.relu()


def gelu(x):
    """GELU in its tanh form, as GPT-2."""
    return x.gelu()


def silu(x):
    return x.silu()


def sigmoid(x):
    return x.sigmoid()


def tanh(x):
    return x.tanh()


def logsumexp(x, axis=-1, keepdims=False):
    return x.logsumexp(axis=axis, keepdims=keepdims)


__all__ = [
    "linear", "embedding", "layer_norm", "rms_norm", "softmax", "log_softmax", "cross_entropy",
    "dropout", "scaled_dot_product_attention", "qkv_attention", "rotary_embedding", "swiglu", "relu", "gelu",
    "silu", "sigmoid", "tanh", "logsumexp", "where", "concatenate", "split", "stack",
]
