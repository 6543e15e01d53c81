"""11: backprop in the browser: write a page you can click through, and see what it holds.

What this teaches
- `to_html(loss, "page.html")` runs the backward one op at a time (it *is* the backward: the
  leaves get their .grad) and writes one self-contained page: open it from disk, no network.
- What to do on the page: Next / Back (or the arrow keys) move one op; watch the gradient arrive
  at the op's output (purple), the op light up, and its contribution land on each input (red),
  added to what that input already held. "run to end": every leaf shows its .grad. "check":
  finite differences next to each gradient.
- The page is data plus a viewer: the steps inside are the engine's, number for number.
- From the shell: `python -m autograd.debug.html script.py` draws the `loss` a script leaves.

Run:  python examples/11_backprop_in_the_browser.py   (a few seconds)
Look at: the pages it writes (scalar_neuron.html, tiny_mlp.html, from_a_script.html).
"""

# %% [markdown]
# ## 1. A neuron of scalars, micrograd style
# Every value gets a name so the page reads like the formula. b is used three times (twice in
# b * b, once in n), so on the page its gradient arrives in three parts: watch the "+=".

# %%
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np

import autograd as ag
from autograd.debug import to_html

ag.set_default_dtype(np.float64)
out_dir = pathlib.Path(os.environ.get("TINYLLM_EXAMPLE_OUT", "."))

x1, x2 = ag.tensor(2.0, name="x1"), ag.tensor(0.0, name="x2")
w1 = ag.tensor(-3.0, requires_grad=True, name="w1")
w2 = ag.tensor(1.0, requires_grad=True, name="w2")
b = ag.tensor(6.88, requires_grad=True, name="b")
n = x1 * w1 + x2 * w2 + b
n.name = "n"
o = n.tanh()
o.name = "o"
loss = (o - 0.5) ** 2 + 0.01 * b * b
loss.name = "loss"
page = to_html(loss, out_dir / "scalar_neuron.html", title="a neuron, micrograd style")
print(f"wrote {page}")
print(f"the engine's gradients: w1 {w1.grad.item():.5f}, w2 {w2.grad.item():.5f}, "
      f"b {b.grad.item():.5f}")


# %% [markdown]
# ## 2. What the page holds
# The page carries its record as JSON in a script block: the tensors, the ops, and each step
# of the backward. Reading it back shows it is the engine's walk: same order, same numbers.

# %%
def record_of(path):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    return json.loads(re.search(r'id="record">(.*?)</script>', text, re.S).group(1))


record = record_of(page)
ops = {op["id"]: op for op in record["ops"]}
values = record["values"]
for step in record["steps"]:
    op = ops[step["op"]]
    sent = ", ".join(f"grad {values[s['input']]['label']} += {s['grad']['values'][0]:.4f}"
                     + (" (added to what it held)" if s["before"] else "") for s in step["sends"])
    print(f"step {step['index']}: {op['call']:<32} | {sent}")
final = {v["label"]: v["final_grad"]["values"][0] for v in values if v.get("final_grad")}
print("final .grad on the page:", {k: round(v, 5) for k, v in final.items()})
assert final == {"w1": w1.grad.item(), "w2": w2.grad.item(), "b": b.grad.item()}
worst = max(abs(e["grad"] - e["fd"]) for leaf in record["check"]["leaves"] for e in leaf["entries"])
print(f"check view: finite differences agree to {worst:.1e}")

# %% [markdown]
# ## 3. A tiny MLP: arrays instead of scalars
# Two layers on a batch of 3. Small arrays are shown whole; bigger ones as min / max / mean and
# a few entries. The bias of each layer is broadcast over the batch: its gradient is a sum.

# %%
rng = np.random.default_rng(0)
x = ag.tensor(rng.normal(size=(3, 2)), name="x")
w_in = ag.tensor(rng.normal(size=(2, 4)), requires_grad=True, name="w_in")
b_in = ag.tensor(np.zeros(4), requires_grad=True, name="b_in")
w_out = ag.tensor(rng.normal(size=(4, 1)), requires_grad=True, name="w_out")
y = ag.tensor([[1.0], [-1.0], [0.5]], name="y")
pred = (x @ w_in + b_in).tanh() @ w_out
loss = ((pred - y) ** 2).mean()
print(f"wrote {to_html(loss, out_dir / 'tiny_mlp.html', title='a tiny MLP')}")
print("b_in.grad =", b_in.grad.round(4))

# %% [markdown]
# ## 4. From the shell
# Any script that leaves its loss in a variable called `loss` can be drawn without editing it.

# %%
script = out_dir / "my_expression.py"
script.write_text("import autograd as ag\n"
                  "a = ag.tensor([1.0, -2.0, 3.0], requires_grad=True, name='a')\n"
                  "loss = (a * a.exp()).sum()\n")
cmd = [sys.executable, "-m", "autograd.debug.html", str(script),
       "-o", str(out_dir / "from_a_script.html")]
done = subprocess.run(cmd, capture_output=True, text=True, check=True)
print("$ python -m autograd.debug.html my_expression.py -o from_a_script.html")
print(done.stdout.strip())
print("open any of these files in a browser; tests/test_html_browser.py clicks through one in "
      "headless Chromium")
