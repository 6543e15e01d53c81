"""03: a small MLP built from `nn` modules, trained with AdamW on two spirals.

What it teaches:
  * a model is a tree of `nn.Module`s; its parameters get dotted names ("layers.0.weight") and
    `num_parameters()` counts them;
  * the training loop every later example repeats: forward, loss, zero_grad, backward,
    clip the gradient norm, set the learning rate from a schedule, step;
  * param groups: weight decay on the weight matrices only, none on the biases;
  * train/eval modes and evaluating under `no_grad()` (no graph is recorded).

Two interleaved spirals cannot be separated by a line: the hidden layers have to bend the plane.
Watch the loss fall, the accuracy climb past 95%, and the picture of the decision regions at the
end follow the arms of the spirals.

Run it:  python examples/03_mlp_from_modules.py   (a few seconds on a laptop CPU)
"""

# %%
import time

import numpy as np

import autograd as ag
from autograd import functional as F
from autograd import nn, optim

SEED = 0
rng = np.random.default_rng(SEED)
nn.manual_seed(SEED)  # model init is reproducible: same seed, same weights


# %% [markdown]
# ## The data: two spirals
# Each class is a spiral arm; the second is the first rotated by half a turn. The points are
# scaled to about [-1, 1] so that the first layer starts with inputs of unit size.


# %%
def two_spirals(n_per_class, noise, rng):
    """Points (2 * n_per_class, 2) and labels 0/1 for two interleaved spiral arms."""
    t = np.sqrt(rng.uniform(0.02, 1.0, size=n_per_class)) * 3 * np.pi  # angle: 1.5 turns
    arms = []
    for label in (0, 1):
        angle = t + label * np.pi
        xy = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (3 * np.pi)
        arms.append(xy + noise * rng.standard_normal(xy.shape))
    x = np.concatenate(arms).astype(np.float32)
    y = np.repeat([0, 1], n_per_class)
    return x, y


x_train, y_train = two_spirals(300, noise=0.05, rng=rng)
x_test, y_test = two_spirals(300, noise=0.05, rng=rng)
print(f"train {x_train.shape}, test {x_test.shape}, classes {np.bincount(y_train)}")


# %% [markdown]
# ## The model
# A module is a class: assign the layers as attributes in `__init__`, use them in `forward`.
# `nn.ModuleList` (not a plain list) makes the layers' parameters the model's parameters.
# By default `nn.Linear` initialises each weight with std 1/sqrt(fan_in), which keeps
# activations at unit size through tanh layers; GPT-style layers ask for std=0.02 instead.


# %%
class MLP(nn.Module):
    """Linear layers with tanh between them: sizes[0] inputs -> ... -> sizes[-1] logits."""

    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        )

    def forward(self, x):
        *hidden, last = self.layers
        for layer in hidden:
            x = layer(x).tanh()
        return last(x)  # logits: no activation, cross_entropy applies the softmax


model = MLP([2, 64, 64, 2])
print(model)
for name, p in model.named_parameters():
    print(f"  {name:18s} {str(p.shape):10s} {p.dtype}")

# %% [markdown]
# A Linear layer from n inputs to m outputs computes y = x W + b: W is (n, m), as printed above,
# and b is (m,), so it holds n*m + m numbers. Counting by hand for 2 -> 64 -> 64 -> 2:
#
#     (2*64 + 64) + (64*64 + 64) + (64*2 + 2) = 192 + 4160 + 130 = 4482
#
# `num_parameters()` walks the same tree of modules and must agree. The dotted names come from
# that tree: `layers` is the ModuleList attribute, `0` its first entry, `weight` that Linear's
# Parameter. Nothing is registered by hand: assigning a Module or Parameter as an attribute is
# what makes it part of the model.

# %%
by_hand = (64 * 2 + 64) + (64 * 64 + 64) + (2 * 64 + 2)
print(f"parameters: {model.num_parameters()} (by hand: {by_hand})")
assert model.num_parameters() == by_hand


# %% [markdown]
# ## The optimizer
# Decay pulls weights towards zero; it is meant for the weight matrices, not for the biases
# (a bias is a single offset: shrinking it only adds error). Two param groups say so.


# %%
decay = [p for p in model.parameters() if p.ndim >= 2]
no_decay = [p for p in model.parameters() if p.ndim < 2]
opt = optim.AdamW([{"params": decay, "weight_decay": 1e-4},
                   {"params": no_decay, "weight_decay": 0.0}], lr=1e-2)
steps, warmup, max_lr, min_lr = 400, 20, 2e-2, 1e-3


def accuracy(x, y):
    model.eval()  # no dropout here, but the habit matters once there is
    with ag.no_grad():  # evaluation needs no graph: faster, less memory
        pred = model(ag.tensor(x)).data.argmax(axis=-1)
    model.train()
    return float((pred == y).mean())


# %% [markdown]
# ## What one AdamW step does
# For each number p with gradient g, AdamW keeps two running averages, m of g and v of g^2, and
# moves p by about lr in the direction of -m / sqrt(v): the division makes the step size
# independent of the gradient's scale (a weight with tiny gradients moves as fast as one with
# huge gradients). Early on m and v are biased towards their start, 0, so both are divided by
# (1 - beta^t). Weight decay is *decoupled*: p shrinks by lr * wd * p directly, instead of
# adding wd * p to the gradient (where the division by sqrt(v) would rescale it).
#
# The optimizer updates in place, block by block, for speed. `autograd/ops/reference.py` has the
# same update written as the formula; one step on a copy of the first weight must match it.

# %%
from autograd.ops.reference import adamw_step

probe = nn.Parameter(model.layers[0].weight.data.copy())
probe.grad = rng.standard_normal(probe.shape).astype(np.float32)
probe_opt = optim.AdamW([probe], lr=1e-2, weight_decay=1e-4)
expected, m, v = adamw_step(probe.data.astype(np.float64), probe.grad.astype(np.float64),
                            0.0, 0.0, t=1, lr=1e-2, weight_decay=1e-4)
before = probe.data.copy()
probe_opt.step()
print("first step, four entries: before", before.ravel()[:4].round(4))
print("                          after ", probe.data.ravel()[:4].round(4))
print("               formula (float64)", expected.ravel()[:4].round(4))
print(f"largest |step| {np.abs(probe.data - before).max():.4f} (about lr = 0.01: at t = 1, "
      "m_hat / sqrt(v_hat) = g / |g| = +-1)")
assert np.allclose(probe.data, expected, atol=1e-6)

# %% [markdown]
# ## Training
# Full batch: every step sees all 600 training points. Each step is the loop every later
# example repeats:
#
# 1. forward: logits, then the loss;
# 2. `zero_grad()`: gradients accumulate (`+=`), so last step's must be cleared first;
# 3. `backward()`: fills every parameter's `.grad`;
# 4. `clip_grad_norm`: if the gradient of all parameters together is longer than 1, scale it
#    down to length 1 (a rare huge gradient then cannot throw the weights far away);
# 5. the learning rate from the schedule: a linear warmup (Adam's v is still a poor estimate
#    in the first steps), then a cosine decay to min_lr;
# 6. `step()`: the AdamW update above, for every parameter.


# %%
x, y = ag.tensor(x_train), y_train
start = time.perf_counter()
for step in range(steps + 1):
    lr = optim.warmup_cosine(step, max_lr, warmup, steps, min_lr)
    opt.set_lr(lr)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad()
    loss.backward()
    grad_norm = optim.clip_grad_norm(model.parameters(), max_norm=1.0)
    opt.step()
    if step % 100 == 0:
        print(f"step {step:5d}  loss {loss.item():.4f}  lr {lr:.4f}  "
              f"grad norm {grad_norm:7.3f}  train acc {accuracy(x_train, y_train):.3f}")
elapsed = time.perf_counter() - start
print(f"trained {steps} steps in {elapsed:.1f} s")


# %% [markdown]
# ## What it learned
# The held-out spiral points were never seen in training. Then a map of the plane: each
# character is the class the model predicts there; `o` and `x` mark training points.


# %%
def draw_regions(width=60, height=24):
    gx, gy = np.meshgrid(np.linspace(-1.1, 1.1, width), np.linspace(1.1, -1.1, height))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    with ag.no_grad():
        pred = model(ag.tensor(grid)).data.argmax(axis=-1).reshape(height, width)
    canvas = np.where(pred == 0, ".", " ").astype(object)
    cols = np.clip(((x_train[:, 0] + 1.1) / 2.2 * (width - 1)).round().astype(int), 0, width - 1)
    rows = np.clip(((1.1 - x_train[:, 1]) / 2.2 * (height - 1)).round().astype(int), 0,
                   height - 1)
    canvas[rows, cols] = np.where(y_train == 0, "o", "x")
    print("\n".join("".join(row) for row in canvas))


draw_regions()
train_acc, test_acc = accuracy(x_train, y_train), accuracy(x_test, y_test)
print(f"final accuracy: train {train_acc:.3f}, test {test_acc:.3f}")
