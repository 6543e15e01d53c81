"""Activation functions: tanh, sigmoid, ReLU, GELU (GPT-2's tanh form) and SiLU, each an
element-wise op with its forward formula and its vector-Jacobian product side by side.

Notation: `g` is the upstream gradient (same shape as the output), `out` the output.
"""

from __future__ import annotations

import math

from autograd.backend import flat_blocks, get_array_module
from autograd.function import Function
from autograd.grad_mode import is_grad_enabled
from autograd.parallel import binary, run_blocks


class Tanh(Function):
    """out = tanh(a).  VJP: da = g * (1 - out**2)."""

    rule = "tanh: d(tanh a)/da = 1 - tanh(a)^2"

    @staticmethod
    def forward(ctx, a):
        out = get_array_module(a).tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved
        return g * (1 - out * out)


def sigmoid(a, xp):
    """1 / (1 + exp(-a)) on an array, in the two-branch stable form: with e = exp(-|a|) <= 1,
    sigmoid(a) = 1 / (1 + e) for a >= 0 and e / (1 + e) for a < 0. exp never overflows, and
    small values keep their relative precision (float32 sigmoid(-20) = 2.06e-9, where
    1 - 1/(1 + e) or (1 + tanh(a/2)) / 2 would round to 0). Used by sigmoid, silu and swiglu."""
    e = xp.exp(-xp.abs(a))
    s = e / (1 + e)  # the a < 0 branch
    return xp.where(a >= 0, 1 - s, s)  # 1 - e/(1+e) = 1/(1+e), exact enough near 1


class Sigmoid(Function):
    """out = 1 / (1 + exp(-a)), in the stable two-branch form (see `sigmoid`).
    VJP: da = g * out * (1 - out)."""

    rule = "sigmoid: d(s(a))/da = s(a) (1 - s(a))"

    @staticmethod
    def forward(ctx, a):
        out = sigmoid(a, get_array_module(a))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved
        return g * out * (1 - out)


class Relu(Function):
    """out = max(a, 0).  VJP: da = g * [a > 0]."""

    rule = "relu: d(max(a,0))/da = [a > 0]"

    @staticmethod
    def forward(ctx, a):
        mask = a > 0
        ctx.save_for_backward(mask)
        return a * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved
        return g * mask


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


class Gelu(Function):
    """GELU, tanh form (as GPT-2): out = a y,  y = (1 + t)/2,  t = tanh(c (a + k a^3)),
    c = sqrt(2/pi), k = 0.044715.
    VJP: da = g * (y + a/2 (1 - t^2) c (1 + 3k a^2)) = g * y (1 + 2c a (1 - y)(1 + 3k a^2)),
    using 1 - t^2 = 4 y (1 - y)."""

    rule = "gelu: d/da = y (1 + 2c a (1-y)(1 + 3k a^2)), y = (1 + tanh(c (a + k a^3)))/2"

    # GELU runs on the widest activation of a GPT (4x the model width). The forward works block
    # by block, in cache, and computes the derivative there too, from the a^2 and y it has at
    # hand: the backward is then one multiply (g * derivative) instead of recomputing tanh, and
    # the derivative is saved instead of `a`, so the memory kept for the backward is the same.
    @staticmethod
    def forward(ctx, a):
        xp = get_array_module(a)
        af = a.reshape(-1)
        out = xp.empty_like(af)
        deriv = xp.empty_like(af) if ctx.needs_input_grad[0] and is_grad_enabled() else None

        def block(blk):
            x = af[blk]
            a2 = x * x
            y = a2 * (_GELU_C * _GELU_K)  # the constants folded: one pass fewer
            y += _GELU_C
            y *= x  # c (a + k a^3)
            xp.tanh(y, out=y)
            y *= 0.5
            y += 0.5
            xp.multiply(y, x, out=out[blk])
            if deriv is not None:
                a2 *= 6.0 * _GELU_K * _GELU_C
                a2 += 2.0 * _GELU_C  # 2c (1 + 3k a^2)
                a2 *= x
                one_minus_y = xp.subtract(1.0, y)
                a2 *= one_minus_y
                a2 += 1.0
                xp.multiply(a2, y, out=deriv[blk])

        run_blocks(block, flat_blocks(af.size, xp))
        ctx.save_for_backward(deriv)
        return out.reshape(a.shape)

    @staticmethod
    def backward(ctx, g):
        (deriv,) = ctx.saved
        return binary(get_array_module(g).multiply, g, deriv.reshape(g.shape))


class Silu(Function):
    """out = a * sigmoid(a).  VJP: da = g * s * (1 + a * (1 - s)),  s = sigmoid(a)."""

    rule = "silu: d(a s(a))/da = s (1 + a (1 - s))"

    @staticmethod
    def forward(ctx, a):
        s = sigmoid(a, get_array_module(a))
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, g):
        a, s = ctx.saved
        return g * s * (1 + a * (1 - s))
