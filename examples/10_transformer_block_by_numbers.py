"""10: one transformer block with real numbers: shapes, values, gradients and FLOPs of every op.

What this teaches
- A pre-norm GPT block is a short program: x + attention(layer_norm(x)), then + MLP(layer_norm).
  Each line below is one op of the engine, with its output shape and a few of its values.
- Where the work is: the FLOPs of each op (2 m k n for a matmul). The matmuls dominate; the
  elementwise ops and norms cost about nothing in comparison (but are memory-bound, see
  benchmarks/), and the backward costs about twice the forward.
- The gradient of every intermediate, from the same backward the engine runs, and the page
  `to_html` writes for this very block: open it and click through the block's backward.

Run:  python examples/10_transformer_block_by_numbers.py   (about a second)
Look at: the FLOPs column (which ops matter), and the file it writes (transformer_block.html).
"""

# %% [markdown]
# ## 1. The block, in ten lines
# T = 4 tokens of width C = 8, H = 2 heads of size d = 4, an MLP 4x wider. Small enough to
# print, big enough to have every piece of a real GPT block. No biases in the projections, to
# keep the graph readable.

# %%
import os
import pathlib

import numpy as np

import autograd as ag
from autograd import functional as F
from autograd.debug import backward_steps, tape, to_html
from autograd.debug._format import Namer, fmt_shape

ag.set_default_dtype(np.float64)
rng = np.random.default_rng(0)
T, C, H = 4, 8, 2
d = C // H


def param(*shape, std=0.3, name=None):
    return ag.tensor(rng.normal(0, std, size=shape), requires_grad=True, name=name)


x = ag.tensor(rng.normal(size=(T, C)), name="x")
g1, b1 = param(C, name="ln1.g"), param(C, name="ln1.b")
w_qkv, w_o = param(C, 3 * C, name="attn.w_qkv"), param(C, C, name="attn.w_o")
g2, b2 = param(C, name="ln2.g"), param(C, name="ln2.b")
w_up, w_down = param(C, 4 * C, name="mlp.w_up"), param(4 * C, C, name="mlp.w_down")
upstream = ag.tensor(rng.normal(size=(T, C)), name="dL/dout")  # a random upstream gradient


def block(x):
    q, k, v = (F.layer_norm(x, g1, b1) @ w_qkv).split(3, axis=-1)   # (T, C) each
    q, k, v = (t.reshape(T, H, d).transpose(1, 0, 2) for t in (q, k, v))  # (H, T, d)
    heads = F.scaled_dot_product_attention(q, k, v, causal=True)    # (H, T, d)
    x = x + heads.transpose(1, 0, 2).reshape(T, C) @ w_o            # residual
    return x + F.gelu(F.layer_norm(x, g2, b2) @ w_up) @ w_down      # residual


# %% [markdown]
# ## 2. Every op of the forward: shape, values, FLOPs
# FLOPs are counted as multiply-adds times 2 for a matmul, and about one per element (a few for
# gelu, layer norm and the softmax inside attention) for the rest: estimates, not measurements.

# %%
def flops(entry):
    name, out = entry.op.name, entry.output
    shapes = [i.shape for i in entry.inputs]
    if name == "matmul":
        (m, k), n = shapes[0][-2:], shapes[1][-1]
        return 2 * m * k * n * int(np.prod(out.shape[:-2], dtype=int))
    if name == "scaleddotproductattention":
        *lead, t, dd = shapes[0]
        s = shapes[1][-2]
        pairs = int(np.prod(lead, dtype=int))
        return pairs * (2 * t * s * dd * 2 + 5 * t * s)  # q k^T, P v, and the softmax
    per_element = {"layernorm": 8, "gelu": 10}.get(name, 1)
    if name in ("split", "reshape", "transpose", "getitem"):
        per_element = 0  # views: no arithmetic
    return per_element * out.size


with tape() as forward_tape:
    out = block(x)
    loss = (out * upstream).sum()
names = Namer()
total = 0
short = {"scaleddotproductattention": "attention"}
print(f"{'op':<26} {'shape':<10} {'first values':<30} FLOPs")
for entry in forward_tape:
    label = names(entry.output, kind=short.get(entry.op.name, entry.op.name))
    n = flops(entry)
    total += n
    first = ", ".join(f"{v:.3f}" for v in entry.output.data.ravel()[:3])
    first += ", ..." if entry.output.size > 3 else ""
    print(f"{label:<26} {fmt_shape(entry.output.shape):<10} {first:<30} {n:,}")
matmul_share = sum(flops(e) for e in forward_tape if e.op.name == "matmul") / total
print(f"forward total: {total:,} FLOPs; matmuls {matmul_share:.0%} of them")
params = [g1, b1, w_qkv, w_o, g2, b2, w_up, w_down]
n_params = sum(p.size for p in params)
matmul_weights = w_qkv.size + w_o.size + w_up.size + w_down.size
print(f"parameters: {n_params}, of which {matmul_weights} in matmul weights: the rule of thumb "
      f"2 * weights * T = {2 * matmul_weights * T:,} FLOPs is exactly the matmuls above")
assert sum(flops(e) for e in forward_tape if e.op.name == "matmul") == 2 * matmul_weights * T

# %% [markdown]
# ## 3. The backward: the gradient every op receives
# The same walk as loss.backward(), paused after each op. The backward of a matmul is two
# matmuls (dA = g B^T, dB = A^T g), so the backward costs about twice the forward.

# %%
for step in backward_steps(loss):
    shape = fmt_shape(step.grad_output.shape)
    print(f"[{step.index:2d}] {short.get(step.name, step.name):<10} grad of output {shape:<10}"
          f" |max| {np.abs(step.grad_output).max():.4f}")
for p in params:
    print(f"  {p.name:<12} {fmt_shape(p.shape):<8} .grad |max| {np.abs(p.grad).max():.4f}")

# %% [markdown]
# ## 4. The same block in the browser
# `to_html` runs this block's backward once more (on a fresh forward) and writes one page: the
# graph laid out from x on the left to the loss on the right, every value and gradient above,
# each op's formula and VJP, and Next / Back through the steps.

# %%
for p in params:
    p.grad = None
out_dir = pathlib.Path(os.environ.get("TINYLLM_EXAMPLE_OUT", "."))
page = to_html((block(x) * upstream).sum(), out_dir / "transformer_block.html",
               title="one transformer block")
print(f"wrote {page}: open it in a browser (works offline)")
