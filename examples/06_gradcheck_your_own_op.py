"""06: write your own op, and prove its gradient right.

What this teaches
- An op is one `Function` subclass: `forward` and `backward` over raw arrays, side by side, and
  a docstring with the forward formula and the vector-Jacobian product (VJP).
- `gradcheck` compares your backward with finite differences; the hypothesis strategies shipped
  in `autograd.testing.strategies` throw many shapes and values at it (0-d, size-1 axes, ...).
- Why the checker uses a RANDOM upstream gradient: a planted bug that ignores it passes the
  naive "sum then backward" test, and the checker still catches it.

Run:  python examples/06_gradcheck_your_own_op.py   (a few seconds; needs hypothesis, which
      comes with `pip install -e .[test]`)
Look at: the bug that looks fine in section 3, and the falsifying example in section 4.
"""

# %% [markdown]
# ## 1. The op: softplus
# softplus(a) = log(1 + exp(a)), a smooth relu. Written naively it overflows for large a
# (exp(1000) = inf), so the forward uses the stable form max(a, 0) + log(1 + exp(-|a|)).
# Its derivative is the sigmoid: d softplus(a)/da = exp(a) / (1 + exp(a)) = sigmoid(a).

# %%
import numpy as np

import autograd as ag
from autograd import Function
from autograd.backend import get_array_module
from autograd.debug import explain
from autograd.testing import GradcheckError, check_invariants, gradcheck

np.set_printoptions(precision=4, suppress=True)


def _sigmoid(a, xp):
    return 0.5 * (1 + xp.tanh(0.5 * a))  # = 1 / (1 + exp(-a)), without overflow


class Softplus(Function):
    """out = log(1 + exp(a)), computed as max(a, 0) + log1p(exp(-|a|)).
    VJP: da = g * sigmoid(a)."""

    rule = "softplus: d(log(1 + e^a))/da = sigmoid(a)"

    @staticmethod
    def forward(ctx, a):
        xp = get_array_module(a)
        ctx.save_for_backward(a)
        return xp.maximum(a, 0) + xp.log1p(xp.exp(-xp.abs(a)))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * _sigmoid(a, get_array_module(a))


def softplus(x):
    return Softplus.apply(x)


explain(Softplus)
x = ag.tensor([-1000.0, -1.0, 0.0, 1.0, 1000.0], requires_grad=True)
y = softplus(x)
print("\nsoftplus(x) =", y.data, " (no overflow at +-1000)")

# %% [markdown]
# ## 2. One gradcheck
# `gradcheck(fn, *inputs)` runs fn in float64, backpropagates a random cotangent u, and
# compares the result with central differences of sum(u * fn(x)).

# %%
gradcheck(softplus, np.array([[-2.0, -0.3, 0.0], [0.4, 1.5, 3.0]]))
print("gradcheck(softplus, a 2x3 array): passed")

# %% [markdown]
# ## 3. Property test with the shipped hypothesis strategies
# One example proves little. `strategies.arrays(strategies.shapes())` draws shapes from 0-d to
# 3-d with size-1 axes, and values in a range; each draw is gradchecked, checked against a NumPy
# reference, and checked for the engine's invariants (no input mutated, no shared memory, a
# second backward adds exactly the same gradient).

# %%
try:
    from hypothesis import given, settings

    from autograd.testing import strategies as ags
except ImportError:  # pragma: no cover - hypothesis is in the `test` extra
    raise SystemExit("this example needs hypothesis: pip install -e '.[test]'") from None


def make_property_test(op_fn):
    # derandomize: the same examples on every run; database=None: no .hypothesis/ folder
    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(ags.arrays(ags.shapes(), low=-6.0, high=6.0))
    def test_softplus(a):
        out = op_fn(ag.tensor(a))
        np.testing.assert_allclose(out.data, np.logaddexp(0.0, a), rtol=1e-12, atol=1e-12)
        gradcheck(op_fn, a)
        check_invariants(op_fn, a)

    return test_softplus


make_property_test(softplus)()
print("property test of Softplus: 40 drawn arrays, all passed")

# %% [markdown]
# ## 4. A planted bug, and the checker catching it
# A common slip: the backward returns the local derivative and forgets to multiply by the
# upstream gradient g. The naive test "y.sum().backward(), compare x.grad with sigmoid(x)" uses
# g = 1 everywhere, so the bug is invisible to it:

# %%
class BuggySoftplus(Softplus):
    """out = log(1 + exp(a)).  VJP: da = g * sigmoid(a)   (but backward forgets the g)."""

    name = "softplus_buggy"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return _sigmoid(a, get_array_module(a))  # BUG: should be g * sigmoid(a)


def buggy_softplus(x):
    return BuggySoftplus.apply(x)


x = ag.tensor(np.linspace(-2, 2, 5), requires_grad=True)
buggy_softplus(x).sum().backward()
print("naive test, g = 1:  x.grad =", np.round(x.grad, 4))
print("       sigmoid(x)          =", np.round(1 / (1 + np.exp(-x.data)), 4), " -> looks right!")

# gradcheck uses a random cotangent (never all ones), so the missing g shows:
try:
    gradcheck(buggy_softplus, np.linspace(-2, 2, 5))
except GradcheckError as err:
    print("\ngradcheck caught it:\n ", err)
    print(f"  (err.op={err.op!r}, err.input_index={err.input_index}, err.index={err.index})")

# The property test catches it too, and hypothesis shrinks the input to a small example.
print("\nThe property test on the buggy op:")
try:
    make_property_test(buggy_softplus)()
except GradcheckError as err:
    print("caught:", str(err).splitlines()[0])
    for note in getattr(err, "__notes__", []):  # hypothesis attaches the shrunk example here
        print("  ", note)

# %% [markdown]
# ## 5. A second classic: a gradient of the wrong dtype
# In float32 training, multiplying by a float64 NumPy scalar promotes the gradient to float64.
# The engine checks every gradient's shape and dtype and names the op that broke it.

# %%
class PromotingSoftplus(Softplus):
    """out = log(1 + exp(a)).  VJP: da = g * sigmoid(a)   (computed in float64 by mistake)."""

    name = "softplus_promoting"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * _sigmoid(a, get_array_module(a)) * np.float64(1.0)  # BUG: float64 scalar


x32 = ag.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
try:
    PromotingSoftplus.apply(x32).sum().backward()
except RuntimeError as err:
    print("the engine caught it:", err)

# %% [markdown]
# ## Try it
# - Plant other bugs: return `-g * sigmoid(a)`, or `g * sigmoid(-a)`. Which input does the
#   checker report, and at which element?
# - Write `Cube` (out = a**3, da = 3 a^2 g) and its property test.
