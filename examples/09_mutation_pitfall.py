"""09: the mutation pitfall: a saved array changes between forward and backward.

What this teaches
- An op's backward uses arrays saved during the forward: d(w*x)/dx = w needs w's values *as
  they were* in the forward. Change w in place before backward() and, in an unguarded engine,
  the gradient is silently wrong: no error, no NaN, just a wrong number.
- How this engine stops it, two ways:
  * a raw in-place write to a saved NumPy array fails at once (the array is read-only while a
    graph holds it), pointing at the line that wrote;
  * a sanctioned update (an optimizer step, `modifying(t)`) raises the tensor's version, and
    backward refuses to run an op whose saved tensors changed version, naming the op and tensor.
- The usual real-world form: `optimizer.step()` called before `loss.backward()`.

Run:  python examples/09_mutation_pitfall.py   (about a second)
Look at: the wrong gradient when the guard is switched off, and the two error messages.
"""

# %% [markdown]
# ## 1. The right gradient
# loss = sum(w * x): the gradient with respect to x is w, read from what `mul` saved.

# %%
import numpy as np

import autograd as ag
from autograd import optim
from autograd.function import modifying

ag.set_default_dtype(np.float64)
w = ag.tensor([1.0, 2.0, 3.0], requires_grad=True, name="w")
x = ag.tensor([0.5, -1.0, 2.0], requires_grad=True, name="x")
loss = (w * x).sum()
loss.backward()
right = x.grad.copy()
print("dL/dx =", right, "(= w, as in the forward)")

# %% [markdown]
# ## 2. What goes wrong without a guard
# We switch the guard off by hand (never do this) and change w after the forward: the backward
# multiplies by the *new* w. The loss was computed with the old one, so the gradient belongs to
# no function at all; training on it quietly goes astray.

# %%
w = ag.tensor([1.0, 2.0, 3.0], requires_grad=True, name="w")
x = ag.tensor([0.5, -1.0, 2.0], requires_grad=True, name="x")
loss = (w * x).sum()
w.data.flags.writeable = True  # what an unguarded engine would leave as it is
w.data[...] = [10.0, 20.0, 30.0]
loss.backward()
print("dL/dx after the change =", x.grad, "<- wrong, and nothing said so")
assert not np.allclose(x.grad, right)

# %% [markdown]
# ## 3. Guard one: a raw write to a saved array fails at once
# While a graph holds w's array, NumPy refuses the write, at the line that tries it.

# %%
w = ag.tensor([1.0, 2.0, 3.0], requires_grad=True, name="w")
x = ag.tensor([0.5, -1.0, 2.0], requires_grad=True, name="x")
loss = (w * x).sum()
try:
    w.data[0] = 10.0
except ValueError as err:
    print("raw write refused:", err)
else:
    raise AssertionError("the write should have been refused")
loss.backward()
assert np.array_equal(x.grad, right)
w.data[0] = 10.0  # after backward the graph is gone and the array is writeable again
print("after backward the array is writeable again:", w.data)

# %% [markdown]
# ## 4. Guard two: the version counter, for sanctioned updates
# An optimizer must write into parameters. It does so inside `modifying(p)`, which lifts the
# lock and raises p's version. A graph built before the update remembers the old version, and
# backward refuses to use it. The classic bug: `step()` before `backward()`.

# %%
w = ag.tensor([1.0, 2.0, 3.0], requires_grad=True, name="w")
x = ag.tensor([0.5, -1.0, 2.0], requires_grad=True, name="x")
opt = optim.SGD([w], lr=0.1)
loss = (w * x).sum()
w.grad = np.ones(3)   # say, a gradient left over from an earlier step
opt.step()            # the bug: the update happens before this loss's backward
print("w's version after the step:", w._version)
try:
    loss.backward()
except RuntimeError as err:
    print("backward refused:", err)
else:
    raise AssertionError("backward should have refused")

# %% [markdown]
# The same through `modifying`, by hand:

# %%
w = ag.tensor([1.0, 2.0, 3.0], requires_grad=True, name="w")
loss = (w * x).sum()
with modifying(w) as data:
    data *= 0.5
try:
    loss.backward()
except RuntimeError as err:
    print("backward refused:", str(err).split(".")[0] + ".")
else:
    raise AssertionError("backward should have refused")
# The fix in both cases: backward() first, then step(); or recompute the loss after the change.
