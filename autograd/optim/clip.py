"""Gradient clipping by global norm."""

from __future__ import annotations

import math

from autograd.backend import get_array_module
from autograd.tensor import Tensor


def clip_grad_norm(params, max_norm):
    """Scale all gradients together, in place, so that their global L2 norm is at most
    `max_norm`; return the norm they had before (a Python float, handy for logging).

    The global norm is sqrt(sum over every parameter of sum(grad^2)): all parameters are treated
    as one long vector, so clipping shrinks every gradient by the same factor and keeps the
    direction of the update. A rare huge gradient (a bad batch, a loss spike) then cannot throw
    the weights far.

    The sum of squares is accumulated in float32 for float32 (and float16) gradients, in float64
    only for float64 gradients: no silent upcast. Parameters without a gradient are skipped.
    """
    params = [params] if isinstance(params, Tensor) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = None
    for g in grads:
        xp = get_array_module(g)
        acc = xp.result_type(g.dtype, xp.float32)  # float16 -> float32; float64 stays
        flat = g.reshape(-1)
        if flat.dtype != acc:
            flat = flat.astype(acc)
        sq = xp.dot(flat, flat)  # a 0-d array: on the GPU, no sync per parameter
        total = sq if total is None else total + sq
    norm = math.sqrt(float(total))  # one sync, at the end
    coef = float(max_norm) / (norm + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= coef  # a Python float: a float32 gradient stays float32
    return norm
