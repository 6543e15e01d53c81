"""Element-wise ops. Binary ops broadcast; the engine sums their gradients back to each input's
shape, so each backward below is written as if the shapes were equal.

Notation: `g` is the upstream gradient (same shape as the output), `out` the output.
"""

from __future__ import annotations

import contextlib
import math

from autograd.backend import flat_blocks, get_array_module
from autograd.function import Function
from autograd.grad_mode import is_grad_enabled
from autograd.parallel import binary, run_blocks


class Add(Function):
    """out = a + b.  VJP: da = g, db = g."""

    rule = "add: d(a+b)/da = 1, d(a+b)/db = 1"

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    """out = a - b.  VJP: da = g, db = -g."""

    rule = "sub: d(a-b)/da = 1, d(a-b)/db = -1"

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, -g if ctx.needs_input_grad[1] else None


class Mul(Function):
    """out = a * b.  VJP: da = g * b, db = g * a."""

    rule = "mul: d(a*b)/da = b, d(a*b)/db = a"

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Function):
    """out = a / b.  VJP: da = g / b, db = -g * a / b**2 = -g * out / b."""

    rule = "div: d(a/b)/da = 1/b, d(a/b)/db = -a/b^2"

    @staticmethod
    def forward(ctx, a, b):
        out = a / b
        ctx.save_for_backward(b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        b, out = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        ga = g / b
        return (ga if need_a else None), (-ga * out if need_b else None)


class Neg(Function):
    """out = -a.  VJP: da = -g."""

    rule = "neg: d(-a)/da = -1"

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """out = a ** b (both tensors, a > 0 where b is differentiated).
    VJP: da = g * b * a**(b-1), db = g * out * log(a).
    At the edges the limits are taken, as PyTorch does: da = 0 where b = 0 (a**0 is the constant
    1, even at a = 0 where a**(b-1) is infinite), db = 0 where a = 0 and b >= 0 (0**b is 0 or 1
    there; out * log(a) would be 0 * -inf)."""

    rule = "pow: d(a^b)/da = b*a^(b-1), d(a^b)/db = a^b*log(a)"

    @staticmethod
    def forward(ctx, a, b):
        out = a**b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved
        xp = get_array_module(a)
        need_a, need_b = ctx.needs_input_grad
        with _quiet(xp):  # the infinities below are computed, then replaced
            ga = g * xp.where(b == 0, 0, b * a ** (b - 1)) if need_a else None
            gb = g * xp.where((a == 0) & (b >= 0), 0, out * xp.log(a)) if need_b else None
        return ga, gb


def _quiet(xp):
    """Silence NumPy's divide/invalid warnings for values that are then masked out."""
    errstate = getattr(xp, "errstate", None)
    return contextlib.nullcontext() if errstate is None else errstate(divide="ignore",
                                                                     invalid="ignore")


class PowScalar(Function):
    """out = a ** p for a constant number p.  VJP: da = g * p * a**(p-1).
    p = 0: out = 1 everywhere (inf and NaN included) and da = 0 (a constant has no slope)."""

    rule = "pow: d(a^p)/da = p*a^(p-1)"

    @staticmethod
    def forward(ctx, a, *, exponent):
        ctx.save_for_backward(a)
        return _power(a, exponent)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        p = ctx.params["exponent"]
        if p == 0:
            return get_array_module(g).zeros_like(g)
        # Python numbers keep the array's dtype under NumPy's promotion rules (NEP 50).
        return g * (p * _power(a, p - 1))


def _power(a, p):
    # Small integer powers by multiplication: `x ** 3` on float32 is far slower than x*x*x.
    if p == 0:
        return get_array_module(a).ones_like(a)
    if p == 1:
        return a.copy()
    if p == 2:
        return a * a
    if p == 3:
        return a * a * a
    if p == 0.5:
        return get_array_module(a).sqrt(a)
    return a**p


class Exp(Function):
    """out = exp(a).  VJP: da = g * out."""

    rule = "exp: d(e^a)/da = e^a"

    @staticmethod
    def forward(ctx, a):
        out = get_array_module(a).exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved
        return g * out


class Log(Function):
    """out = log(a).  VJP: da = g / a."""

    rule = "log: d(log a)/da = 1/a"

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return get_array_module(a).log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g / a


class Sqrt(Function):
    """out = sqrt(a).  VJP: da = g / (2 * out)."""

    rule = "sqrt: d(sqrt a)/da = 1/(2 sqrt a)"

    @staticmethod
    def forward(ctx, a):
        out = get_array_module(a).sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved
        return g / (out + out)


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


class Abs(Function):
    """out = |a|.  VJP: da = g * sign(a) (0 at a = 0)."""

    rule = "abs: d|a|/da = sign(a)"

    @staticmethod
    def forward(ctx, a):
        xp = get_array_module(a)
        ctx.save_for_backward(a)
        return xp.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * get_array_module(a).sign(a)


class Maximum(Function):
    """out = max(a, b) element-wise.  VJP: the larger input gets g; ties split g in half."""

    rule = "maximum: d/da = [a > b] + [a == b]/2"

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return get_array_module(a, b).maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return _split_by_winner(g, a > b, a == b)


class Minimum(Function):
    """out = min(a, b) element-wise.  VJP: the smaller input gets g; ties split g in half."""

    rule = "minimum: d/da = [a < b] + [a == b]/2"

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return get_array_module(a, b).minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return _split_by_winner(g, a < b, a == b)


def _split_by_winner(g, a_wins, tie):
    share_a = a_wins + 0.5 * tie  # 1 where a wins, 1/2 on a tie, 0 where b wins
    share_a = share_a.astype(g.dtype, copy=False)
    return g * share_a, g * (1 - share_a)


class Clip(Function):
    """out = min(max(a, lo), hi).  VJP: da = g where lo <= a <= hi, else 0."""

    rule = "clip: d/da = [lo <= a <= hi]"

    @staticmethod
    def forward(ctx, a, *, lo=None, hi=None):
        xp = get_array_module(a)
        inside = xp.ones(a.shape, dtype=bool)
        out = a.copy()
        # One bound at a time: NumPy 1.x's clip refuses two None bounds.
        if lo is not None:
            inside &= a >= lo
            xp.maximum(out, lo, out=out)
        if hi is not None:
            inside &= a <= hi
            xp.minimum(out, hi, out=out)
        ctx.save_for_backward(inside)
        return out

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved
        return g * inside


class Where(Function):
    """out = cond ? a : b, with `cond` a boolean array (no gradient).
    VJP: da = g * cond, db = g * (not cond)."""

    rule = "where: d/da = cond, d/db = not cond"

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return get_array_module(a, b).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved
        _, need_a, need_b = ctx.needs_input_grad
        xp = get_array_module(g)
        zero = xp.zeros((), dtype=g.dtype)
        return (None, xp.where(cond, g, zero) if need_a else None,
                xp.where(cond, zero, g) if need_b else None)


class Cast(Function):
    """out = a cast to `dtype`.  VJP: da = g cast back to a's dtype."""

    rule = "cast: d/da = 1"
    keeps_dtype = False

    @staticmethod
    def forward(ctx, a, *, dtype):
        ctx.src_dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.src_dtype)


def where(cond, a, b):
    """Differentiable `numpy.where(cond, a, b)`; `cond` is a boolean array or tensor."""
    from autograd.tensor import Tensor

    cond = cond.data if isinstance(cond, Tensor) else cond
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if like is not None:  # scalars take the tensor's dtype, as in the operators
        a, b = like._lift(a), like._lift(b)
    return Where.apply(cond, a, b)
