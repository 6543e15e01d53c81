"""08: what `backward()` does, written out in twenty lines.

What this teaches
- The graph: every tensor made by an op keeps a node (`t._node`): the op, its saved context and
  its input tensors. backward() needs nothing else.
- The topological sort: list every tensor after all of its inputs (a depth-first search), then
  walk that list from the end. Walking it backwards guarantees that when we reach a tensor, every
  op that used it has already sent its part of the gradient: the gradient is complete.
- The walk: for each tensor, call its op's backward with the complete gradient and ADD (+=) what
  comes back to each input's gradient. Undo broadcasting on the way (a sum over the copies).
- Why the order matters: a walk that visits a tensor before all its users have reported passes
  on a partial gradient, and the result is silently wrong.

Run:  python examples/08_topological_sort_and_walk.py   (about a second)
Look at: "ours" and "engine" agreeing to the last bit, and the wrong order's error.
"""

# %% [markdown]
# ## 1. A small graph where one tensor is used twice
# h is used by two ops, a sum right next to the loss and a mul further away, so dL/dh is the
# sum of two contributions. A bias of shape (2,) is broadcast over 3 rows, so its gradient is a
# sum over rows.

# %%
import numpy as np

import autograd as ag
from autograd.engine import topological_order
from autograd.function import unbroadcast

ag.set_default_dtype(np.float64)
rng = np.random.default_rng(0)
X, W, B, C = (rng.normal(size=s) for s in [(3, 4), (4, 2), (2,), (3, 2)])


def forward():
    """A fresh graph (backward frees the graph it walks, so each walk needs its own)."""
    x = ag.tensor(X, name="x")
    w = ag.tensor(W, requires_grad=True, name="w")
    b = ag.tensor(B, requires_grad=True, name="b")
    h = (x @ w + b).tanh()
    h.name = "h"
    c = ag.tensor(C, name="c")
    loss = h.sum() + ((h * c).tanh() * c).sum()
    return loss, w, b


# %% [markdown]
# ## 2. The topological sort: each tensor after its inputs
# Depth-first: before listing a tensor, list (once) every input that needs a gradient.

# %%
def topo_sort(root):
    order, seen = [], set()

    def visit(t):
        if id(t) in seen:
            return
        seen.add(id(t))
        if t._node is not None:
            for parent in t._node.inputs:
                if parent.requires_grad:
                    visit(parent)
        order.append(t)

    visit(root)
    return order


loss, w, b = forward()
ours = topo_sort(loss)
print("our order:   ", [t.name or t._node.fn.name for t in ours])
engine_order = topological_order(loss)  # the engine's (iterative, so deep graphs never recurse)
print("engine order:", [t.name or t._node.fn.name for t in engine_order])
assert [id(t) for t in ours] == [id(t) for t in engine_order]

# %% [markdown]
# ## 3. The walk: backward() in twenty lines
# Start with dL/dL = 1. Visit the tensors from the loss back to the inputs; a tensor's gradient
# is complete when we reach it, so it can be handed to its op's backward. Leaves keep theirs.

# %%
def my_backward(root, order):
    grads = {id(root): np.ones_like(root.data)}
    for t in reversed(order):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        node = t._node
        if node is None:  # a leaf: store its gradient
            t.grad = g
            continue
        input_grads = node.fn.backward(node.ctx, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for i, (inp, ig) in enumerate(zip(node.inputs, input_grads)):
            if ig is None or not inp.requires_grad:
                continue
            ig = unbroadcast(ig, inp.shape, node.fn.name, i)  # a sum over the broadcast copies
            grads[id(inp)] = grads[id(inp)] + ig if id(inp) in grads else ig  # the +=


loss, w, b = forward()
my_backward(loss, topo_sort(loss))
ours = {"w": w.grad, "b": b.grad}
loss, w, b = forward()
loss.backward()
for name, engine in (("w", w.grad), ("b", b.grad)):
    print(f"d loss/d {name}: ours {ours[name].ravel()[:3].round(5)} ... engine "
          f"{engine.ravel()[:3].round(5)} ...  identical: {np.array_equal(ours[name], engine)}")
    assert np.array_equal(ours[name], engine)

# %% [markdown]
# ## 4. Why the order matters
# Walk the same graph breadth-first from the loss instead, handing each tensor to its op as soon
# as *some* gradient has arrived. h is two steps from the loss through the sum, four through the
# mul: it is reached after the sum reported and before the mul did. Its op then runs with part
# of its gradient, and everything upstream of h is wrong.

# %%
def wrong_order(root):
    order, frontier, seen = [], [root], {id(root)}
    while frontier:
        t = frontier.pop(0)
        order.append(t)
        for parent in (t._node.inputs if t._node else ()):
            if parent.requires_grad and id(parent) not in seen:
                seen.add(id(parent))
                frontier.append(parent)
    return order[::-1]  # my_backward walks its list from the end


loss, w, b = forward()
print("breadth-first order:", [t.name or t._node.fn.name for t in wrong_order(loss)[::-1]])
my_backward(loss, wrong_order(loss))
error = np.abs(w.grad - ours["w"]).max()
print(f"d loss/d w from the wrong order is off by up to {error:.3f}")
assert error > 1e-3
