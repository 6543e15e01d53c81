"""01: backprop by hand, on a few scalars.

What this teaches
- A computation is a graph of small ops; backprop walks it from the loss back to the inputs.
- Each op only needs its local derivative (its "rule"); the chain rule multiplies them.
- A value used twice (here w) gets the SUM of the gradients from each use.
- The engine does exactly what you do by hand: `backward_steps` shows it, one op at a time.

Run:  python examples/01_scalar_backprop_by_hand.py   (a second; opens as a notebook too)
Look at: the two columns "by hand" and "engine" agreeing, the step lines, and the picture.
"""

# %% [markdown]
# ## 1. A tiny neuron and a loss
# One input x, a weight w and a bias b; the neuron's output is y = tanh(w x + b). We want y to
# be near a target t, and we also penalise big weights (weight decay):
#
#     L = (y - t)^2 + 0.1 w^2
#
# Every intermediate gets a name, so the graph and the steps below are easy to read.

# %%
import tempfile
from pathlib import Path

import numpy as np

import autograd as ag
from autograd.debug import (
    GraphvizNotFound,
    backward_steps,
    explain,
    render,
    retain_grads,
    tape,
    to_dot,
)

ag.set_default_dtype(np.float64)  # float64: hand arithmetic and engine agree to ~1e-16


def leaf(value, name):
    return ag.tensor(value, requires_grad=True, name=name)


def build():
    """The forward pass: returns the loss and the leaves (x, w, b)."""
    x, w, b = leaf(1.5, "x"), leaf(0.8, "w"), leaf(-0.2, "b")
    t = 1.0  # the target: a plain number, so a constant in the graph
    wx = w * x
    z = wx + b
    y = z.tanh()
    err = y - t
    sq = err**2
    w2 = w**2
    decay = 0.1 * w2
    loss = sq + decay
    for tensor, name in [(wx, "wx"), (z, "z"), (y, "y"), (err, "err"), (sq, "sq"), (w2, "w2"),
                         (decay, "decay"), (loss, "L")]:
        tensor.name = name
    return loss, (x, w, b)


with tape() as forward_tape:
    loss, (x, w, b) = build()
print("The forward pass, one line per op (the tape):")
print(forward_tape)
print(f"\nL = {loss.item():.6f}")

# %% [markdown]
# ## 2. The backward pass by hand
# Start from dL/dL = 1 and go backwards through the ops; at each op multiply the gradient that
# arrives (dL/d(output)) by the op's local derivative d(output)/d(input).

# %%
xv, wv, bv = 1.5, 0.8, -0.2
zv = wv * xv + bv
yv = np.tanh(zv)
hand = {}
hand["L"] = 1.0
hand["sq"] = hand["L"] * 1.0  # L = sq + decay: d/dsq = 1
hand["decay"] = hand["L"] * 1.0  # ... and d/ddecay = 1
hand["err"] = hand["sq"] * 2 * (yv - 1.0)  # sq = err^2: d/derr = 2 err
hand["y"] = hand["err"] * 1.0  # err = y - t: d/dy = 1
hand["z"] = hand["y"] * (1 - yv**2)  # y = tanh(z): d/dz = 1 - tanh(z)^2
hand["wx"] = hand["z"] * 1.0  # z = wx + b
hand["b"] = hand["z"] * 1.0
hand["x"] = hand["wx"] * wv  # wx = w * x: d/dx = w
hand["w2"] = hand["decay"] * 0.1  # decay = 0.1 * w2
# w is used twice: in w*x and in w^2. Its gradient is the sum over both uses.
from_wx = hand["wx"] * xv  # d(w x)/dw = x
from_w2 = hand["w2"] * 2 * wv  # d(w^2)/dw = 2 w
hand["w"] = from_wx + from_w2

print("By hand (chain rule, from the loss backwards):")
for name in ["L", "sq", "decay", "w2", "err", "y", "z", "wx", "b", "x"]:
    print(f"  dL/d{name:<6}= {hand[name]: .6f}")
print(f"  dL/dw     = {from_wx:.6f} (through w*x) + {from_w2:.6f} (through w^2)"
      f" = {hand['w']:.6f}")

# %% [markdown]
# ## 3. The engine, one step at a time
# `backward_steps` runs the engine's backward pass and pauses after every op. Each line reads:
# `[step] output = op(inputs) | grad arriving at the output | gradients sent to the inputs |
# the op's rule` (a and b are the op's arguments, in order).

# %%
print("The engine's backward pass, step by step:")
steps = []
for step in backward_steps(loss):
    print(" ", step)
    steps.append(step)

# %% [markdown]
# ## 4. Compare: every gradient by hand against the engine
# Each step's `grad_output` is dL/d(that op's output); the leaves' `.grad` hold the rest.

# %%
print(f"\n  {'':10}{'by hand':>12}{'engine':>12}")
for step in steps:
    name = step.output.name
    engine = float(step.grad_output)
    assert np.isclose(engine, hand[name]), name
    print(f"  dL/d{name:<6}{hand[name]:12.6f}{engine:12.6f}  ok")
for t in (x, w, b):
    assert np.isclose(t.grad, hand[t.name]), t.name
    print(f"  dL/d{t.name:<6}{hand[t.name]:12.6f}{float(t.grad):12.6f}  ok   (leaf .grad)")

# w got two contributions: find them in the steps.
to_w = [float(g) for s in steps for i, g in zip(s.inputs, s.grad_inputs) if i is w]
print(f"\nw received {len(to_w)} contributions: {to_w} -> sum {sum(to_w):.6f} = w.grad")

# %% [markdown]
# ## 5. The picture
# `to_dot` gives the graph as Graphviz text; `render` draws it when Graphviz is installed.
# Blue boxes are inputs that need a gradient, dashed ones constants, orange ovals are ops; the
# edge labels a and b say which argument of the op each value fills. We re-run backward with
# `retain_graph=True` so the graph is still there, and keep the intermediates' gradients with
# `retain_grads` (retain_grad() on each) so the picture shows them too.

# %%
loss, (x, w, b) = build()
retain_grads(loss)  # retain_grad() on every intermediate, so each box shows its gradient
loss.backward(retain_graph=True)
dot_text = to_dot(loss)
print("\nDOT text (first lines):")
print("\n".join(dot_text.splitlines()[:8]) + "\n  ...")
out = Path(tempfile.gettempdir()) / "tinyllm_01_graph.png"
try:
    render(loss, out)
    print(f"\nThe graph is drawn in {out}: open it and follow the gradients backwards.")
except GraphvizNotFound as err:
    print("\n(No picture: " + str(err).splitlines()[0] + ")")

# %% [markdown]
# ## 6. Where the rules come from
# Every op documents its forward formula and its vector-Jacobian product (VJP).

# %%
explain("tanh")

# %% [markdown]
# ## Try it
# - Change `0.1 * w**2` to `0.1 * w * w`: how many contributions does w get now?
# - Set x to 10: why do all gradients before tanh almost vanish? (look at dL/dz)
# - Replace tanh by `z.sigmoid()` and redo section 2 by hand.
