"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as PyTorch's AdamW."""

from __future__ import annotations

import math

from autograd.backend import flat_blocks, get_array_module
from autograd.optim.optimizer import Optimizer
from autograd.parallel import run_blocks


class AdamW(Optimizer):
    """At step t (1, 2, ...) with gradient g, for each parameter p:

        p  <- p * (1 - lr * weight_decay)              decoupled decay, scaled by lr
        m  <- b1 * m + (1 - b1) * g                    running mean of g      ("exp_avg")
        v  <- b2 * v + (1 - b2) * g^2                  running mean of g^2    ("exp_avg_sq")
        m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)   bias correction: m, v start at 0
        p  <- p - lr * m_hat / (sqrt(v_hat) + eps)

    With amsgrad=True, v_hat uses the running maximum of v instead of v ("max_exp_avg_sq").

    Each coordinate's step is about lr in size whatever the scale of its gradient, because m is
    divided by the root of v. Decoupled decay shrinks the weights directly instead of adding
    wd * p to g (which Adam would then rescale, weakening decay on weights with big gradients).
    With weight_decay=0 this is exactly Adam.

    The update is done in place: m and v are preallocated, and one scratch buffer per parameter
    holds the intermediate terms, so a step allocates nothing full-size.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False):
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if eps < 0.0:
            raise ValueError(f"invalid eps {eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def update(self, p, grad, group, state):
        xp = get_array_module(p.data)
        # Python floats throughout: a NumPy float64 scalar would promote float32 arrays.
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        b1, b2 = (float(b) for b in group["betas"])
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] = t = int(state["step"]) + 1
        bias1 = 1.0 - b1**t
        bias2 = 1.0 - b2**t
        arrays = [a for a in (p.data, grad, state["exp_avg"], state["exp_avg_sq"],
                              state.get("max_exp_avg_sq")) if a is not None]
        blocks = [slice(None)]
        if all(a.flags.c_contiguous for a in arrays):  # flat views share memory with the arrays
            arrays = [a.reshape(-1) for a in arrays]
            blocks = flat_blocks(p.data.size, xp)
        # Block by block, so the dozen passes below run in cache (one block on a GPU), the
        # blocks spread over autograd.parallel's threads; the scratch space is one block per
        # block (freed blocks are reused: autograd/memory.py), not a parameter-sized buffer.
        scratch = self.scratch(p) if len(blocks) == 1 else None

        def block(blk):
            data, g, m, v, *vmax = (a[blk] for a in arrays)
            s = scratch.reshape(data.shape) if scratch is not None else xp.empty_like(data)
            if wd != 0.0:
                data *= 1.0 - lr * wd
            xp.multiply(g, 1.0 - b1, out=s)
            m *= b1
            m += s  # m = b1 m + (1 - b1) g
            xp.multiply(g, g, out=s)
            s *= 1.0 - b2
            v *= b2
            v += s  # v = b2 v + (1 - b2) g^2
            if vmax:
                v = xp.maximum(vmax[0], v, out=vmax[0])
            # lr * m_hat / (sqrt(v_hat) + eps) = (lr / bias1) * m / (sqrt(v) / sqrt(bias2) + eps)
            xp.sqrt(v, out=s)
            s /= math.sqrt(bias2)
            s += eps
            xp.divide(m, s, out=s)
            s *= lr / bias1
            data -= s

        run_blocks(block, blocks)
