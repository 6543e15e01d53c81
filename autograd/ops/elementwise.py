"""Element-wise ops: arithmetic, exp / log / sqrt, abs, maximum / minimum, clip, where and casts
(the activation functions are in activations.py). Binary ops broadcast; the engine sums their
gradients back to each input's shape, so each backward below is written as if the shapes were
equal.

Notation: `g` is the upstream gradient (same shape as the output), `out` the output.
"""

from __future__ import annotations

import contextlib

from autograd.backend import get_array_module
from autograd.function import Function


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
