"""04: the layer norm backward, derived by hand.

What this teaches
- Layer norm from primitive ops (mean, var, sqrt, ...), and its gradient derived on paper.
- Why the famous formula has two "mean terms": every x in a row also moves the row's mean and
  variance. In the graph of primitives, x feeds three ops (x - mean, mean, var), and each of
  the three paths gives exactly one term of the formula.
- Three independent checks agree: the engine on primitives, the hand formula, and finite
  differences; then the fused op `F.layer_norm`, which uses the formula directly.

Run:  python examples/04_layernorm_backward.py   (about a second)
Look at: the three contributions to dL/dx, and the error when a mean term is dropped.
"""

# %% [markdown]
# ## 1. Forward, from primitives
# For each row x (N features): mu = mean(x), var = mean((x - mu)^2),
# xhat = (x - mu) / sqrt(var + eps), y = gamma * xhat + beta.

# %%
import numpy as np

import autograd as ag
from autograd import functional as F
from autograd.debug import backward_steps, explain, tape

ag.set_default_dtype(np.float64)
np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(0)
B, N, eps = 3, 5, 1e-5
x_np = rng.standard_normal((B, N)) * 2 + 1
gamma_np = 1 + 0.1 * rng.standard_normal(N)
beta_np = 0.1 * rng.standard_normal(N)
u = rng.standard_normal((B, N))  # a random upstream gradient: L = sum(u * y), so dL/dy = u


def layer_norm_primitives(x, gamma, beta):
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    xc = x - mu
    rstd = 1 / (var + eps).sqrt()
    xhat = xc * rstd
    for t, name in [(mu, "mu"), (var, "var"), (xc, "xc"), (rstd, "rstd"), (xhat, "xhat")]:
        t.name = name
    y = gamma * xhat + beta
    y.name = "y"
    return y


x = ag.tensor(x_np, requires_grad=True, name="x")
gamma = ag.tensor(gamma_np, requires_grad=True, name="gamma")
beta = ag.tensor(beta_np, requires_grad=True, name="beta")
with tape() as forward_tape:
    y = layer_norm_primitives(x, gamma, beta)
    loss = (y * ag.tensor(u, name="u")).sum()
    loss.name = "L"
print(forward_tape)
print("\nrow means of y - beta, over gamma:", ((y.data - beta_np) / gamma_np).mean(axis=-1))
print("row variances                    :", ((y.data - beta_np) / gamma_np).var(axis=-1))

# %% [markdown]
# ## 2. Derivation
# Write g = dL/dy and gh = g * gamma = dL/dxhat, rstd = 1/sqrt(var + eps), and take one row.
# xhat_i = (x_i - mu) rstd depends on x_j three ways: directly, through mu, and through var:
#
#     d xhat_i / d x_j = rstd [delta_ij]              (direct)
#                      - rstd / N                      (through mu: d mu/dx_j = 1/N)
#                      - xhat_i xhat_j rstd / N        (through var: d var/dx_j = 2 (x_j - mu)/N)
#
# so dL/dx_j = sum_i gh_i d xhat_i/dx_j is
#
#     dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
#
# and, because y = gamma * xhat + beta is applied to every row,
# dgamma = sum over rows of g * xhat, dbeta = sum over rows of g.

# %%
def layer_norm_backward_by_hand(x, gamma, g, eps, mean_terms=True):
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    gh = g * gamma
    dx = gh.copy()
    if mean_terms:
        dx -= gh.mean(axis=-1, keepdims=True)
        dx -= xhat * (gh * xhat).mean(axis=-1, keepdims=True)
    dx *= rstd
    return dx, (g * xhat).sum(axis=0), g.sum(axis=0)


dx_hand, dgamma_hand, dbeta_hand = layer_norm_backward_by_hand(x_np, gamma_np, u, eps)

# %% [markdown]
# ## 3. The engine on primitives: three paths into x
# Step through the backward pass and collect what each op sends to x. Each of the three
# contributions is one term of the formula.

# %%
contributions = {}
for step in backward_steps(loss):
    for inp, g in zip(step.inputs, step.grad_inputs):
        if inp is x and g is not None:
            contributions[step.name] = g
            print(f"step {step.index}: {step.name} sends dL/dx a contribution; rule: {step.rule}")

mu = x_np.mean(axis=-1, keepdims=True)
rstd = 1 / np.sqrt(x_np.var(axis=-1, keepdims=True) + eps)
xhat = (x_np - mu) * rstd
gh = u * gamma_np
terms = {
    "sub": ("direct path (x - mu)", rstd * gh),
    "mean": ("through mu", -rstd * gh.mean(axis=-1, keepdims=True)),
    "var": ("through var", -rstd * xhat * (gh * xhat).mean(axis=-1, keepdims=True)),
}
for op, (what, term) in terms.items():
    ok = np.allclose(contributions[op], np.broadcast_to(term, x_np.shape))
    print(f"  {op:<4} {what:<22} = matching term of the formula: {'ok' if ok else 'MISMATCH'}")
    assert ok
print("\nx.grad (sum of the three) matches the hand formula:", np.allclose(x.grad, dx_hand))
print("gamma.grad matches:", np.allclose(gamma.grad, dgamma_hand),
      "  beta.grad matches:", np.allclose(beta.grad, dbeta_hand))
assert np.allclose(x.grad, dx_hand) and np.allclose(gamma.grad, dgamma_hand)
assert np.allclose(beta.grad, dbeta_hand)

# %% [markdown]
# ## 4. Finite differences, the referee
# Nudge every x[i, j] by +-h, recompute L, and divide: no calculus involved.

# %%
def loss_np(x_values):
    xm = x_values.mean(axis=-1, keepdims=True)
    xh = (x_values - xm) / np.sqrt(x_values.var(axis=-1, keepdims=True) + eps)
    return float(np.sum(u * (gamma_np * xh + beta_np)))


h = 1e-6
numeric = np.zeros_like(x_np)
for idx in np.ndindex(x_np.shape):
    e = np.zeros_like(x_np)
    e[idx] = h
    numeric[idx] = (loss_np(x_np + e) - loss_np(x_np - e)) / (2 * h)
print("max |hand - finite differences|       :", np.abs(dx_hand - numeric).max())
dx_wrong, _, _ = layer_norm_backward_by_hand(x_np, gamma_np, u, eps, mean_terms=False)
print("max |no mean terms - finite differences|:", np.abs(dx_wrong - numeric).max(),
      " <- the bug the checker must catch")
assert np.abs(dx_hand - numeric).max() < 1e-6

# %% [markdown]
# ## 5. The fused op
# `F.layer_norm` computes the same thing in one op, with the formula above as its backward:
# fewer, larger NumPy calls and less memory than the chain of primitives. It must agree.

# %%
explain("layernorm")
xf = ag.tensor(x_np, requires_grad=True)
gf = ag.tensor(gamma_np, requires_grad=True)
bf = ag.tensor(beta_np, requires_grad=True)
yf = F.layer_norm(xf, gf, bf, eps=eps)
(yf * ag.tensor(u)).sum().backward()
print("fused forward == primitives :", np.allclose(yf.data, y.data))
print("fused dx, dgamma, dbeta     :", np.allclose(xf.grad, dx_hand),
      np.allclose(gf.grad, dgamma_hand), np.allclose(bf.grad, dbeta_hand))
assert np.allclose(yf.data, y.data) and np.allclose(xf.grad, dx_hand)
ag.gradcheck(lambda a, g_, b_: F.layer_norm(a, g_, b_, eps=eps), x_np, gamma_np, beta_np)
print("gradcheck(F.layer_norm): passed")

# %% [markdown]
# And the planted bug from section 4, as an op: the same LayerNorm with the mean terms
# dropped from its backward. gradcheck points at the op and the element.

# %%
from autograd.ops.nn import LayerNorm  # noqa: E402


class LayerNormNoMeanTerms(LayerNorm):
    """LayerNorm whose backward forgets that mean and var depend on x (a planted bug).
    VJP: dx = rstd * gh  (wrong), dgamma and dbeta as before."""

    name = "layernorm_no_mean_terms"

    @staticmethod
    def backward(ctx, g):
        x, mean, rstd, gamma = ctx.saved  # the op keeps x and each row's mean and 1/std
        rows = g.reshape(-1, g.shape[-1])  # (B, N): gamma and beta were used by every row
        rstd = rstd[:, None]
        xhat = (x.reshape(rows.shape) - mean[:, None]) * rstd
        dgamma = (rows * xhat).sum(axis=0)
        dx = rows * gamma * rstd  # BUG: dx lacks the mean terms
        return dx.reshape(g.shape), dgamma, rows.sum(axis=0)


try:
    ag.gradcheck(lambda a, g_, b_: LayerNormNoMeanTerms.apply(a, g_, b_, eps=eps),
                 x_np, gamma_np, beta_np)
except ag.GradcheckError as err:
    print("gradcheck caught the missing mean terms:\n ", err)

# %% [markdown]
# ## Try it
# - Set every x in a row equal: what is xhat, and why does eps matter? (look at rstd)
# - RMSNorm drops the mean: derive its backward the same way (one path fewer), and compare
#   with `F.rms_norm`.
