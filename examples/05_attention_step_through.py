"""05: one attention head, every intermediate shown, forward and backward.

What this teaches
- Causal self-attention for one head: q, k, v projections, scores q k^T / sqrt(d), a causal
  mask, a softmax per row, and a weighted sum of the values.
- The masked softmax: masked positions get probability exactly 0 and gradient exactly 0, and
  the softmax backward dS = P * (dP - sum(dP * P)) derived by hand.
- How a fully masked row turns into NaN when built naively with -inf, how `detect_anomaly`
  finds the op and line, and why the fused `F.softmax(x, mask=...)` does not have the problem.
- The fused `F.scaled_dot_product_attention` agrees with the step-by-step version.

Run:  python examples/05_attention_step_through.py   (about a second)
Look at: the upper triangles of P and of dL/dscores (exact zeros), and the anomaly report.
"""

# %% [markdown]
# ## 1. The inputs
# T = 4 tokens, each a vector of C = 4 numbers; one head of size d = 3.

# %%
import numpy as np

import autograd as ag
from autograd import functional as F
from autograd.debug import AnomalyError, backward_steps, detect_anomaly

ag.set_default_dtype(np.float64)
np.set_printoptions(precision=3, suppress=True, linewidth=100)
rng = np.random.default_rng(1)
T, C, d = 4, 4, 3
x = ag.tensor(rng.standard_normal((T, C)), requires_grad=True, name="x")
Wq, Wk, Wv = (ag.tensor(rng.standard_normal((C, d)) / np.sqrt(C), requires_grad=True, name=n)
              for n in ("Wq", "Wk", "Wv"))
u = ag.tensor(rng.standard_normal((T, d)), name="u")  # L = sum(u * out): dL/dout = u


def show(title, t):
    print(f"{title}  {t.shape}\n{np.asarray(t.data if hasattr(t, 'data') else t)}\n")


# %% [markdown]
# ## 2. Forward, one op at a time
# Query i asks "what am I looking for", key j says "what I contain"; their dot product, scaled
# by 1/sqrt(d) to keep the softmax from saturating, scores how much token i attends to j.
# Causal: token i may only look at tokens j <= i, so the upper triangle is masked with -inf,
# which the softmax turns into probability 0.

# %%
def attention_by_hand(x, Wq, Wk, Wv, mask):
    q, k, v = x @ Wq, x @ Wk, x @ Wv
    scores = (q @ k.T) * (1 / np.sqrt(d))
    masked = ag.where(mask, scores, -np.inf)
    m = masked.max(axis=-1, keepdims=True)  # subtract the row max: exp never overflows
    e = (masked - m).exp()
    P = e / e.sum(axis=-1, keepdims=True)
    out = P @ v
    parts = dict(q=q, k=k, v=v, scores=scores, masked=masked, m=m, e=e, P=P, out=out)
    for name, t in parts.items():
        t.name = name
        t.retain_grad()  # keep every intermediate's gradient, to print it below
    return out, parts


causal = np.tril(np.ones((T, T), dtype=bool))
out, parts = attention_by_hand(x, Wq, Wk, Wv, causal)
loss = (out * u).sum()
loss.name = "L"
for name in ("q", "k", "v", "scores", "masked", "P", "out"):
    show(name, parts[name])
P = parts["P"].data
print("rows of P sum to", P.sum(axis=-1), "; upper triangle exactly 0:",
      bool((P[~causal] == 0).all()))

# %% [markdown]
# ## 3. Backward, one op at a time
# Each line: the op, the gradient arriving at its output, what it sends to its inputs.

# %%
print()
for step in backward_steps(loss):
    print(step)
print()
for name in ("out", "P", "e", "masked", "scores", "q", "k", "v"):
    show(f"dL/d{name}", parts[name].grad)

# %% [markdown]
# ## 4. The softmax backward by hand
# P_ij = exp(S_ij) / sum_k exp(S_ik) in each row. Its Jacobian is dP_ij/dS_il = P_ij (delta_jl
# - P_il), so with dP = dL/dP:
#
#     dS = P * (dP - sum_j(dP * P))        (the sum along each row, kept as a column)
#
# Masked positions have P = 0, so their dS is exactly 0: no gradient leaks to the future,
# even though dL/dP there is not 0 (it is dL/dout @ v^T, which knows nothing of the mask).

# %%
dP = parts["P"].grad
dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))
print("dL/dP in masked positions (not zero):", dP[~causal])
print("dS by hand == engine's dL/dmasked   :", np.allclose(dS, parts["masked"].grad))
print("dL/dscores in masked positions      :", parts["scores"].grad[~causal], "(exactly 0)")
assert np.allclose(dS, parts["masked"].grad) and (parts["scores"].grad[~causal] == 0).all()
# and the scores gradient flows on into q and k: dq = dS k / sqrt(d), dk = dS^T q / sqrt(d)
q, k = parts["q"].data, parts["k"].data
dscores = parts["scores"].grad
print("dq == dS k / sqrt(d)  :", np.allclose(parts["q"].grad, dscores @ k / np.sqrt(d)))
print("dk == dS^T q / sqrt(d):", np.allclose(parts["k"].grad, dscores.T @ q / np.sqrt(d)))

# %% [markdown]
# ## 5. The fused ops agree
# `F.softmax(x, mask=...)` is one op with the formula of section 4 as its backward;
# `F.scaled_dot_product_attention` does sections 2 to 4 in one op, over (batch, heads, T, d).

# %%
scores = ag.tensor(parts["scores"].data, requires_grad=True)
P_fused = F.softmax(scores, axis=-1, mask=causal)
(P_fused * ag.tensor(dP)).sum().backward()
print("F.softmax: same P:", np.allclose(P_fused.data, P),
      " same dS:", np.allclose(scores.grad, parts["scores"].grad))

xf, Wqf, Wkf, Wvf = (ag.tensor(t.data, requires_grad=True) for t in (x, Wq, Wk, Wv))
qf, kf, vf = ((xf @ W).reshape(1, 1, T, d) for W in (Wqf, Wkf, Wvf))  # batch 1, one head
out_fused = F.scaled_dot_product_attention(qf, kf, vf, causal=True).reshape(T, d)
(out_fused * u).sum().backward()
same = [np.allclose(a.grad, b.grad) for a, b in zip((xf, Wqf, Wkf, Wvf), (x, Wq, Wk, Wv))]
print("F.scaled_dot_product_attention: same out:", np.allclose(out_fused.data, out.data),
      " same dx, dWq, dWk, dWv:", same)
assert np.allclose(out_fused.data, out.data) and all(same)

# %% [markdown]
# ## 6. A fully masked row, and detect_anomaly
# Suppose padding masks every key of the last query. Built by hand, that row is all -inf; its
# max is -inf, and -inf - (-inf) is NaN, which spreads through everything after. Inside
# `detect_anomaly()` the first op that creates a NaN raises, naming itself and your line.

# %%
pad = causal.copy()
pad[-1, :] = False  # the last query may see nothing
with np.errstate(invalid="ignore"):  # NumPy would also warn about the NaN: we know
    try:
        with detect_anomaly():
            attention_by_hand(x, Wq, Wk, Wv, pad)
    except AnomalyError as err:
        print("detect_anomaly:", err)
    bad_out, _ = attention_by_hand(x, Wq, Wk, Wv, pad)
print("\nwithout it, the output's last row is:", bad_out.data[-1])
safe = F.softmax(parts["scores"], axis=-1, mask=pad)
print("F.softmax with the same mask gives a row of zeros instead:", safe.data[-1])

# %% [markdown]
# ## Try it
# - Remove the 1/sqrt(d) scaling and make d = 64 (random q, k): how peaked do the rows of P get?
# - Change the loss to depend on the first token's output only. Which rows of dL/dv are zero,
#   and why?
