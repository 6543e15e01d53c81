"""07: LoRA by hand: the low-rank update, its gradients, and why B starts at zero.

What this teaches
- A LoRA layer computes y = x W + b + s * x A B with W frozen, A (in, r), B (r, out), s = alpha/r.
  (This engine stores W as (in, out), so A and B are the transposes of the paper's matrices.)
- Its gradients follow from the chain rule in two lines; we derive them and check them against
  the engine and against finite differences.
- Why B = 0 at the start (and A random): the model starts exactly as the pre-trained one, and
  still learns. With A = B = 0 it would never move.
- One SGD step of LoRA is the full fine-tuning gradient projected onto the columns of A.
- merge() folds s A B into W: the fine-tuned layer costs nothing extra at inference.

Run:  python examples/07_lora_by_hand.py   (a few seconds)
Look at: section 3 (the zero gradients) and section 4 (the projection).
"""

# %% [markdown]
# ## 1. The layer
# A pre-trained weight W (in=6, out=4) is frozen. LoRA of rank r=2 adds A (6 x 2) and B (2 x 4);
# the layer learns 2 * (6 + 4) = 20 numbers instead of 6 * 4 = 24 (on a real model, with
# in = out = 768 and r = 8, it is 12,288 instead of 589,824: 2%).

# %%
import numpy as np

import autograd as ag
from autograd import nn
from autograd.testing import gradcheck

np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(0)

base = nn.Linear(6, 4, dtype="float64", rng=rng)
layer = nn.LoRALinear.from_linear(base, rank=2, alpha=4.0, rng=rng)
print(layer)
print("trainable:", [n for n, p in layer.named_parameters() if p.requires_grad])
print("scale s = alpha / r =", layer.scale)

x = rng.standard_normal((5, 6))  # a batch of 5 inputs
out = layer(ag.tensor(x)).data
print("B is zero, so the layer starts as the base layer:",
      np.array_equal(out, base(ag.tensor(x)).data))

# %% [markdown]
# ## 2. The gradients, by hand
# Write h = x A (5 x 2) and y = x W + b + s h B. For a loss L with upstream gradient g = dL/dy:
#
#     dL/dB = s h^T g = s (x A)^T g              (2 x 4)
#     dL/dA = s x^T (g B^T)                      (6 x 2)
#     dL/dx = g W^T + s (g B^T) A^T              (5 x 6)
#     dL/dW = nothing: W is frozen, no gradient is even computed.
#
# Give B some value first (at B = 0, dL/dA would be zero: see section 3).

# %%
layer.lora_B.data = rng.standard_normal((2, 4))
A, B, W, s = layer.lora_A.data, layer.lora_B.data, layer.weight.data, layer.scale
g = rng.standard_normal((5, 4))  # a random upstream gradient (never all ones)

xt = ag.tensor(x, requires_grad=True)
layer(xt).backward(g)
by_hand = {"A": s * x.T @ (g @ B.T), "B": s * (x @ A).T @ g, "x": g @ W.T + s * (g @ B.T) @ A.T}
by_engine = {"A": layer.lora_A.grad, "B": layer.lora_B.grad, "x": xt.grad}
for name in by_hand:
    err = np.abs(by_hand[name] - by_engine[name]).max()
    print(f"d L / d {name}: hand vs engine, max difference {err:.1e}")
    assert err < 1e-12
print("W.grad:", layer.weight.grad)

# %% [markdown]
# And against finite differences: nudge one entry of A by +-eps and watch sum(g * y) change.

# %%
def objective(A_value):
    layer.lora_A.data = A_value
    return float(np.sum(g * layer(ag.tensor(x)).data))


eps, i, j = 1e-6, 3, 1
A_plus, A_minus = A.copy(), A.copy()
A_plus[i, j] += eps
A_minus[i, j] -= eps
numeric = (objective(A_plus) - objective(A_minus)) / (2 * eps)
layer.lora_A.data = A
print(f"dL/dA[{i},{j}]: finite differences {numeric:.8f}, formula {by_hand['A'][i, j]:.8f}")
assert abs(numeric - by_hand["A"][i, j]) < 1e-7


def lora_forward(x, A, B):  # the whole layer, for the engine's own checker
    layer.lora_A, layer.lora_B = A, B
    return layer(x)


gradcheck(lora_forward, x, A.copy(), B.copy())  # random cotangents, float64
layer.lora_A, layer.lora_B = nn.Parameter(A), nn.Parameter(B)
print("gradcheck of x, A and B: passed")

# %% [markdown]
# ## 3. Why B starts at zero (and A does not)
# - B = 0 makes s A B = 0: the fine-tuned model starts as the pre-trained one, exactly.
# - If A were 0 too, dL/dB = s (x A)^T g = 0 and dL/dA = s x^T g B^T = 0: no gradient, ever.
# - With A random and B = 0: dL/dA = 0 but dL/dB is not, so the first step moves B, and from
#   then on A moves too. (B random and A = 0 would also learn, but B = 0 keeps the input side
#   random, where it spreads the input over r directions, as the paper does.)

# %%
def grads(A0, B0):
    lay = nn.LoRALinear.from_linear(base, rank=2, alpha=4.0)
    lay.lora_A.data, lay.lora_B.data = A0, B0
    lay(ag.tensor(x)).backward(g)
    return float(np.abs(lay.lora_A.grad).max()), float(np.abs(lay.lora_B.grad).max())


print("A = 0,      B = 0:  max |dA|, |dB| =", grads(np.zeros((6, 2)), np.zeros((2, 4))))
print("A random,   B = 0:  max |dA|, |dB| =", grads(rng.standard_normal((6, 2)), np.zeros((2, 4))))

# %% [markdown]
# ## 4. One LoRA step is the full gradient, projected
# Full fine-tuning would step W by -lr * G with G = dL/dW = x^T g. LoRA's first step (B = 0)
# changes only B, by -lr * s (x A)^T g = -lr * s A^T G, so the layer's weight changes by
#
#     s A (B - lr s A^T G) - 0  =  -lr s^2 (A A^T) G
#
# the full gradient mapped through A A^T, into the r-dimensional column space of A.

# %%
lay = nn.LoRALinear.from_linear(base, rank=2, alpha=4.0, rng=np.random.default_rng(1))
G = x.T @ g  # what full fine-tuning's gradient of W would be
lay(ag.tensor(x)).backward(g)
lr = 0.1
lay.lora_B.data = lay.lora_B.data - lr * lay.lora_B.grad  # one plain SGD step
A1, s = lay.lora_A.data, lay.scale
predicted = -lr * s**2 * (A1 @ A1.T) @ G
print("change of the effective weight, measured vs predicted: max difference",
      f"{np.abs(lay.delta_weight() - predicted).max():.1e}")
print("rank of the change:", np.linalg.matrix_rank(lay.delta_weight()), "(r = 2; G has rank",
      np.linalg.matrix_rank(G), ")")

# %% [markdown]
# ## 5. Merging: fine-tuned weights at no extra cost
# merge() adds s A B into W; the layer is then one matrix product again. unmerge() takes it
# back out (equal to the original W up to rounding).

# %%
W0 = layer.weight.data.copy()
before = layer(ag.tensor(x)).data
layer.merge()
print("merged output equals adapted output:", np.allclose(layer(ag.tensor(x)).data, before,
                                                         atol=1e-12))
print("W changed by s A B:", np.allclose(layer.weight.data - W0, layer.delta_weight()))
layer.unmerge()
print("after unmerge, W is back: max |W - W0| =", np.abs(layer.weight.data - W0).max())

# %% [markdown]
# ## 6. What rank buys: fit a rank-2 change with rank 1 and rank 2
# The target is the base layer plus a rank-2 change. Rank 2 fits it (to rounding); rank 1
# cannot, whatever the training: the best it can do is the largest singular direction.

# %%
from autograd import optim

target_delta = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 4)) * 0.5
X = rng.standard_normal((64, 6))
Y = X @ (base.weight.data + target_delta) + base.bias.data
for rank in (1, 2):
    lay = nn.LoRALinear.from_linear(base, rank=rank, alpha=rank, rng=np.random.default_rng(2))
    opt = optim.AdamW([lay.lora_A, lay.lora_B], lr=0.05, weight_decay=0.0)
    for _ in range(600):
        loss = ((lay(ag.tensor(X)) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    print(f"rank {rank}: final mean squared error {float(loss.data):.2e}")
