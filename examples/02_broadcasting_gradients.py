"""02: gradients through broadcasting.

What this teaches
- Broadcasting copies a value along axes (a bias of shape (3,) is used by every row of a (4, 3)
  batch). Each copy sends back its own gradient, and the copies' gradients ADD UP: the gradient
  of a broadcast is a sum over the broadcast axes.
- The dual: a sum (or mean) over an axis sends its gradient back by broadcasting it.
- In this engine an op's backward may return a gradient of the broadcast shape; the engine
  undoes the broadcasting once for every op (`unbroadcast`), then checks shape and dtype.
- Finite differences (`gradcheck`) confirm it all.

Run:  python examples/02_broadcasting_gradients.py   (about a second)
Look at: the shapes in each backward step, and "returned by add" vs "given to bias".
"""

# %% [markdown]
# ## 1. A bias added to every row
# y = x + bias with x (4, 3) and bias (3,). To make the gradient interesting we take
# L = sum(c * y) with a fixed random c, so dL/dy = c (a different number for every element).

# %%
import numpy as np

import autograd as ag
from autograd.debug import backward_steps, op_hooks
from autograd.function import unbroadcast

ag.set_default_dtype(np.float64)
rng = np.random.default_rng(0)
np.set_printoptions(precision=3, suppress=True)

x = ag.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="x")
bias = ag.tensor([0.1, -0.2, 0.3], requires_grad=True, name="bias")
c = ag.tensor(rng.standard_normal((4, 3)), name="c")  # a constant: no gradient needed
y = x + bias
y.name = "y"
loss = (y * c).sum()
loss.name = "L"
for step in backward_steps(loss):
    print(step)

print("\nbias.grad      =", bias.grad, " shape", bias.grad.shape)
print("c.sum(axis=0)  =", c.data.sum(axis=0), "  <- the four rows' gradients, added")
assert np.allclose(bias.grad, c.data.sum(axis=0))
assert np.allclose(x.grad, c.data)  # x is not broadcast: it gets c as it is

# %% [markdown]
# ## 2. Why a sum? Make the copies explicit
# `bias.broadcast_to((4, 3))` builds the four copies as a tensor of its own. Its gradient is
# (4, 3): one row per copy. The bias is the same number in each copy, so nudging it nudges
# all four, and the effects add.

# %%
bias.grad = None
copies = bias.broadcast_to((4, 3))
copies.name = "copies"
copies.retain_grad()
((x + copies) * c).sum().backward()
print("copies.grad (one row per copy):\n", copies.grad)
print("bias.grad = sum of the rows:   ", bias.grad)

# %% [markdown]
# ## 3. Who does the summing? The engine
# The add op's backward is just `return g, g` (see `explain("add")`): it returns a (4, 3)
# gradient for the (3,) bias. The engine then calls `unbroadcast(grad, bias.shape)`, once, for
# every op. An op-level backward hook sees what the op returned; the step shows what the input
# got.

# %%
returned = {}


def spy(op, ctx, grad, input_grads):
    returned[op.name] = [None if g is None else g.shape for g in input_grads]


bias.grad = None
with op_hooks(backward=spy):
    steps = list(backward_steps(((x + bias) * c).sum()))
add_step = [s for s in steps if s.name == "add"][0]
print("returned by add's backward:", returned["add"])
print("given to (x, bias):        ", [g.shape for g in add_step.grad_inputs])
print("unbroadcast((4, 3) of ones, (3,)) =", unbroadcast(np.ones((4, 3)), (3,)))

# %% [markdown]
# ## 4. The general rule, for every kind of broadcasting
# Broadcasting lines shapes up from the right. An input is copied along
# - new leading axes (shape (3,) against (2, 4, 3)): the gradient is summed over them and they
#   disappear;
# - axes where it has size 1 (shape (4, 1) against (4, 3)): the gradient is summed over them,
#   keeping the size-1 axis;
# - every axis, for a 0-d scalar: the gradient is the sum of everything.

# %%
cases = [((2, 4, 3), (3,)), ((2, 4, 3), (4, 1)), ((2, 4, 3), (2, 1, 3)), ((2, 4, 3), ())]
for big_shape, small_shape in cases:
    big = ag.tensor(rng.standard_normal(big_shape), requires_grad=True)
    small = ag.tensor(rng.standard_normal(small_shape), requires_grad=True)
    g = rng.standard_normal(big_shape)
    ((big * small) * g).sum().backward()
    # by hand: d/dsmall of sum(g * big * small) = g * big, summed over the copied axes
    full = g * big.data
    lead = full.ndim - len(small_shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(small_shape) if n == 1 and big_shape[lead + i] != 1)
    by_hand = full.sum(axis=axes).reshape(small_shape)
    assert np.allclose(small.grad, by_hand)
    print(f"small {str(small_shape):<10} in {big_shape}: summed over axes {axes} -> grad shape "
          f"{small.grad.shape}  matches by-hand sum: ok")

# %% [markdown]
# ## 5. The dual: a reduction sends its gradient back by broadcasting
# mean(axis=1, keepdims=True) turns (4, 3) into (4, 1). Its backward gives every one of the 3
# elements of a row the same share, g / 3: the (4, 1) gradient broadcast back to (4, 3).

# %%
x.grad = None
m = x.mean(axis=1, keepdims=True)
m.name = "m"
g_m = np.array([[1.0], [2.0], [3.0], [4.0]])
steps = list(backward_steps(m, grad=g_m))
print(steps[0])
print("x.grad =\n", x.grad, "\n(each row is g_m / 3, copied across the row)")
assert np.allclose(x.grad, np.broadcast_to(g_m / 3, (4, 3)))

# %% [markdown]
# ## 6. A classic mistake, and finite differences catching it
# Writing the bias gradient by hand, it is tempting to average the rows (c.mean(axis=0)) as if
# it were a "typical" row. Finite differences settle it: nudge each bias entry by eps and
# watch L move.

# %%
def loss_of(b):
    return float(((x.data + b) * c.data).sum())


eps = 1e-6
b0 = bias.data.copy()
numeric = np.array([(loss_of(b0 + eps * e) - loss_of(b0 - eps * e)) / (2 * eps)
                    for e in np.eye(3)])
print("finite differences:", numeric)
print("sum over rows     :", c.data.sum(axis=0), " <- right")
print("mean over rows    :", c.data.mean(axis=0), " <- wrong by a factor of 4 (the batch size)")

# The same check, automated: gradcheck compares every backward with finite differences.
ag.gradcheck(lambda a, b, s: (a * b + s).tanh(), rng.standard_normal((2, 4, 3)),
             rng.standard_normal((4, 1)), rng.standard_normal(3))
print("gradcheck on a broadcasting expression: passed")

# %% [markdown]
# ## Try it
# - Predict the shape and value of `scale.grad` for `(x * scale).sum()` with scale of shape
#   (4, 1), then check.
# - Why does `x.grad` in section 5 not depend on the values of x?
