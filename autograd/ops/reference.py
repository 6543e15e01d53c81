"""Plain reference implementations of the fast ops: the formulas, written as formulas.

The fast ops (GELU, layer norm, attention, softmax, cross-entropy) and the AdamW step work block
by block, in place, to stay in the CPU cache; that hides the formula a student came to read.
Each function here is the docstring's formula in a few lines of NumPy, forward and
vector-Jacobian product (VJP) side by side, with no blocking and no in-place tricks.
`explain(op, source=True)` prints them next to the fast code, and
tests/test_reference.py checks fast == reference on random inputs, including sizes big
enough to take several blocks. Nothing in the engine calls these: they are for reading and
for checking. Like the ops, they reach NumPy through the array's own module (`xp`, NumPy or
CuPy); the tests compare them on NumPy.

In every VJP, g is dL/d(out), the gradient arriving from the ops after this one.
"""

from __future__ import annotations

import math

from autograd.backend import get_array_module

# ---- GELU (tanh form, as GPT-2) ---------------------------------------------------------------
C = math.sqrt(2 / math.pi)


def gelu(a):
    """out = a/2 (1 + tanh(c (a + 0.044715 a^3))),  c = sqrt(2/pi)."""
    xp = get_array_module(a)
    t = xp.tanh(C * (a + 0.044715 * a**3))
    return 0.5 * a * (1 + t)


def gelu_vjp(a, g):
    """da = g (0.5 (1 + t) + 0.5 a (1 - t^2) c (1 + 3 * 0.044715 a^2))."""
    xp = get_array_module(a)
    t = xp.tanh(C * (a + 0.044715 * a**3))
    return g * (0.5 * (1 + t) + 0.5 * a * (1 - t**2) * C * (1 + 3 * 0.044715 * a**2))


# ---- layer norm (over the last axis) ----------------------------------------------------------
def layer_norm(x, gamma, beta, eps=1e-5):
    """out = xhat gamma + beta,  xhat = (x - mean) / sqrt(var + eps)."""
    xp = get_array_module(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    xhat = (x - mean) / xp.sqrt(var + eps)
    return xhat * gamma + beta


def layer_norm_vjp(x, gamma, g, eps=1e-5):
    """dx = (gh - mean(gh) - xhat mean(gh xhat)) / sqrt(var + eps),  gh = g gamma;
    dgamma = sum over rows of g xhat;  dbeta = sum over rows of g."""
    xp = get_array_module(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    xhat = (x - mean) / xp.sqrt(var + eps)
    gh = g * gamma
    dx = (gh - gh.mean(axis=-1, keepdims=True)
          - xhat * (gh * xhat).mean(axis=-1, keepdims=True)) / xp.sqrt(var + eps)
    rows = tuple(range(x.ndim - 1))
    return dx, (g * xhat).sum(axis=rows), g.sum(axis=rows)


# ---- softmax and cross-entropy ----------------------------------------------------------------
def softmax(x, axis=-1):
    """y = exp(x - max x) / sum(exp(x - max x)): the max cancels, and exp never overflows."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_vjp(x, g, axis=-1):
    """dx = y (g - sum(g y))."""
    y = softmax(x, axis)
    return y * (g - (g * y).sum(axis=axis, keepdims=True))


def cross_entropy(logits, targets):
    """loss = mean over rows i of -log p_i[t_i],  p_i = softmax(logits_i)."""
    xp = get_array_module(logits)
    p = softmax(logits.reshape(-1, logits.shape[-1]))
    t = targets.reshape(-1)
    return -xp.log(p[xp.arange(len(t)), t]).mean()


def cross_entropy_vjp(logits, targets, g):
    """dlogits_i = g (p_i - onehot(t_i)) / n."""
    xp = get_array_module(logits)
    V = logits.shape[-1]
    p = softmax(logits.reshape(-1, V))
    t = targets.reshape(-1)
    onehot = xp.eye(V)[t]
    return (g * (p - onehot) / len(t)).reshape(logits.shape)


# ---- causal scaled dot-product attention ------------------------------------------------------
def attention(q, k, v):
    """out = softmax(q k^T / sqrt(d) + causal mask) v; query i sees keys j <= i (T == S)."""
    xp = get_array_module(q)
    T, d = q.shape[-2], q.shape[-1]
    scores = q @ xp.swapaxes(k, -1, -2) / math.sqrt(d)
    future = xp.triu(xp.ones((T, T), dtype=bool), k=1)
    scores = xp.where(future, -xp.inf, scores)
    return softmax(scores) @ v


def attention_vjp(q, k, v, g):
    """dv = P^T g,  dP = g v^T,  dS = P (dP - sum(dP P)),  dq = dS k / sqrt(d),
    dk = dS^T q / sqrt(d)."""
    xp = get_array_module(q)
    T, d = q.shape[-2], q.shape[-1]
    future = xp.triu(xp.ones((T, T), dtype=bool), k=1)
    P = softmax(xp.where(future, -xp.inf, q @ xp.swapaxes(k, -1, -2) / math.sqrt(d)))
    dv = xp.swapaxes(P, -1, -2) @ g
    dP = g @ xp.swapaxes(v, -1, -2)
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))
    return dS @ k / math.sqrt(d), xp.swapaxes(dS, -1, -2) @ q / math.sqrt(d), dv


# ---- one AdamW step ---------------------------------------------------------------------------
def adamw_step(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Step t (1, 2, ...): returns the new (p, m, v).
    p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)."""
    xp = get_array_module(p)
    b1, b2 = betas
    p = p * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return p - lr * m_hat / (xp.sqrt(v_hat) + eps), m, v


#: op name (as `explain` knows it) -> its reference functions, shown by explain(op, source=True)
REFERENCES = {
    "gelu": (gelu, gelu_vjp),
    "layer_norm": (layer_norm, layer_norm_vjp),
    "softmax": (softmax, softmax_vjp),
    "cross_entropy": (cross_entropy, cross_entropy_vjp),
    "scaled_dot_product_attention": (attention, attention_vjp),
    "adamw": (adamw_step,),
}


def reference_for(name):
    """The reference functions of the op called `name` (any case, '_' optional), or ()."""
    wanted = name.lower().replace("_", "")
    for key, fns in REFERENCES.items():
        if key.replace("_", "") == wanted:
            return fns
    return ()
