"""`to_html(loss, "backprop.html")`: step through the real backward pass in a browser.

    from autograd.debug import to_html
    loss = ((w * x + b).tanh() - y).square().sum()
    to_html(loss, "backprop.html")     # runs loss's backward, step by step, and writes the page

The page is one self-contained file (its CSS, JavaScript and SVG inline, nothing fetched), so it
opens from disk and works offline. It shows:

- the graph, laid out in layers: inputs on the left, the loss on the right. Each tensor shows its
  name, shape and value; each op its name, and on a click its forward formula and its
  vector-Jacobian product (the docstring, as `explain` prints it);
- the backward pass as the engine ran it (`backward_steps`, which is `engine.iter_backward`
  paused after each op): Next / Back, the arrow keys and a slider move through the steps. At each
  step the op is highlighted with the gradient arriving at its output, its rule, and the
  gradient it sends to each input, which is added (`+=`) to what that input already holds: a
  tensor used by two ops receives two contributions. After the last step every leaf shows its
  `.grad`, exactly as the engine stored it;
- a "check" view: for each leaf, central finite differences of the loss next to the gradient.

`to_html` *is* the backward: afterwards the leaves hold their `.grad` as after `loss.backward()`
(and the graph is freed unless `retain_graph=True`). Call it instead of `backward()`, not after.
From the command line, `python -m autograd.debug.html script.py` runs a script and writes the
page for the tensor it leaves in a variable called `loss`.
"""

from __future__ import annotations

import html
import json
import os
import tempfile

import numpy as np

from autograd.backend import asnumpy
from autograd.debug._format import Namer, arg_names, fmt_params, rule_of, walk
from autograd.debug.explain import split_docstring
from autograd.debug.html._page import PAGE
from autograd.debug.steps import backward_steps
from autograd.function import Context

#: arrays with at most this many entries are written out in full; larger ones as statistics
MAX_ELEMENTS = 64
#: at most this many entries of each leaf are checked by finite differences
CHECK_ENTRIES = 12


def to_html(tensor, path="backprop.html", grad=None, title=None, retain_graph=False,
            check=True, max_elements=MAX_ELEMENTS):
    """Run `tensor`'s backward step by step and write the page to `path` (returned).

    grad: the upstream gradient when `tensor` is not a scalar (as for `backward(grad)`).
    check: also estimate each leaf's gradient by finite differences (re-runs the recorded ops
           in float64; cheap for the small graphs this page is for).
    max_elements: arrays up to this size are shown in full, larger ones as min/max/mean and a
           few entries.
    """
    record = record_backward(tensor, grad=grad, retain_graph=retain_graph, check=check,
                             max_elements=max_elements)
    title = title or f"backprop through {record['values'][-1]['label']}"
    page = PAGE.replace("__TITLE__", html.escape(title))
    # "<" escaped so that no value can close the script element early
    data = json.dumps(record, separators=(",", ":")).replace("<", "\\u003c")
    page = page.replace("__DATA__", data)
    _write_atomically(path, page)
    return path


def record_backward(tensor, grad=None, retain_graph=False, check=True,
                    max_elements=MAX_ELEMENTS) -> dict:
    """Everything the page shows, as plain JSON-able data: `values` (tensors), `ops`, `steps`
    (one per op's backward, in the engine's order) and `check`. Runs the backward."""
    node = tensor._node
    if node is None:
        raise ValueError("to_html: this tensor is a leaf; pass the result of a computation "
                         "(e.g. the loss)")
    if node.released:
        raise ValueError("to_html: the graph of this tensor was already freed by backward(); "
                         "call to_html(loss) instead of loss.backward() (it runs the backward), "
                         "or pass retain_graph=True to the first backward()")
    pack = _Packer(max_elements)
    order = walk(tensor)
    names = Namer()
    vid = {id(t): i for i, t in enumerate(order)}
    values = [_describe_value(t, i, names(t), pack, t is tensor) for i, t in enumerate(order)]
    made = [t for t in order if t._node is not None]
    ops = []
    for t in made:
        n = t._node
        ops.append({
            "id": len(order) + len(ops), "fn": n.fn, "inputs": [vid[id(i)] for i in n.inputs],
            "output": vid[id(t)], "params": dict(n.ctx.params),
        })
    op_of = {o["output"]: o for o in ops}
    _layout(values, ops, op_of)
    prior = {i: None if t.grad is None else np.array(asnumpy(t.grad)) for i, t in enumerate(order)}
    leaves = [i for i, t in enumerate(order) if t._node is None and t.requires_grad]
    checked = _finite_differences(order, ops, vid, leaves, grad, tensor) if check else None

    steps, so_far = [], {}
    for step in backward_steps(tensor, grad=grad, retain_graph=retain_graph):
        out = vid[id(step.output)]
        sends = []
        for slot, (inp, g) in enumerate(zip(step.inputs, step.grad_inputs)):
            if g is None:
                continue
            i, g = vid[id(inp)], asnumpy(g)
            before = so_far.get(i)
            after = g if before is None else before + g  # the engine's own sum, in its order
            so_far[i] = after
            sends.append({"input": i, "slot": slot, "grad": pack(g),
                          "before": None if before is None else pack(before),
                          "after": pack(after)})
        steps.append({"index": step.index, "op": op_of[out]["id"],
                      "grad_out": pack(step.grad_output), "sends": sends})

    for i in leaves:
        t = order[i]
        values[i]["final_grad"] = None if t.grad is None else pack(t.grad)
        if prior[i] is not None:
            values[i]["about"] += (" It held a .grad before this backward: the final .grad is "
                                   "that plus the sum shown in the steps.")
    if checked:
        _fill_check(checked, order, values, prior)
    for o in ops:
        fn = o.pop("fn")
        forward, vjp = split_docstring(fn)
        args = arg_names(fn, len(o["inputs"]))
        params = fmt_params(o.pop("params"))
        call_args = [values[i]["label"] if len(args) == 1 else f"{a}={values[i]['label']}"
                     for a, i in zip(args, o["inputs"])]  # written as backward_steps writes it
        o.update(name=fn.name, qualname=f"{fn.__module__}.{fn.__qualname__}", args=list(args),
                 params=params, forward=forward or "(no formula in the docstring)",
                 vjp=vjp or "(no VJP in the docstring)", rule=rule_of(fn),
                 call=f"{values[o['output']]['label']} = {fn.name}("
                      f"{', '.join(call_args + ([params] if params else []))})")
    return {"values": values, "ops": ops, "steps": steps,
            "check": checked or {"about": "check=False: no finite differences were computed.",
                                 "leaves": [], "tolerance": 1e-4}}


def _describe_value(t, i, label, pack, is_root):
    if t._node is not None:
        kind, about = "value", f"made by the op '{t._node.fn.name}'."
    elif t.requires_grad:
        kind, about = "leaf", "an input that needs a gradient (a leaf: backward stores its .grad)."
    else:
        kind, about = "const", "an input that needs no gradient (a constant)."
    if is_root:
        kind += " output"
        about = "the output: backward starts here with dL/dL = 1. " + about
    return {"id": i, "label": label, "kind": kind, "shape": list(t.shape), "dtype": str(t.dtype),
            "requires_grad": bool(t.requires_grad), "value": pack(t.data), "about": about}


class _Packer:
    """An array as JSON: every entry when small, statistics and the first entries when large.
    JSON has no NaN or infinity: those travel as the strings "NaN", "Infinity", "-Infinity"."""

    def __init__(self, max_elements):
        self.max_elements = max_elements

    def __call__(self, a):
        a = np.asarray(asnumpy(a))
        packed = {"shape": list(a.shape), "dtype": str(a.dtype)}
        if a.size <= self.max_elements:
            packed["values"] = _numbers(a.ravel())
            return packed
        f = a.astype(np.float64)
        packed["stats"] = dict(zip(("min", "max", "mean", "absmax"), _numbers(np.array(
            [f.min(), f.max(), f.mean(), np.abs(f).max()]))))
        packed["head"] = _numbers(a.ravel()[:6])
        return packed


def _numbers(flat):
    if flat.dtype.kind == "b":
        return [int(v) for v in flat]
    if flat.dtype.kind in "iu":
        return [int(v) for v in flat]
    out = []
    for v in flat.astype(np.float64):
        v = float(v)
        out.append(v if np.isfinite(v) else ("NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")))
    return out


def _layout(values, ops, op_of):
    """Columns: tensors on even columns, ops on odd ones. An op sits one column right of its
    rightmost computed input; an input (leaf or constant) one column left of its first user.
    Rows: forward order, then a few passes that move each node towards its neighbours' mean."""
    for v in values:  # forward order: inputs first
        o = op_of.get(v["id"])
        if o is None:
            continue
        computed = [values[i]["col"] for i in o["inputs"] if i in op_of]
        o["col"] = max(computed, default=0) + 1
        v["col"] = o["col"] + 1
    for v in values:
        if v["id"] not in op_of:
            users = [o["col"] for o in ops if v["id"] in o["inputs"]]
            v["col"] = min(users, default=1) - 1
    nodes = values + ops
    neighbours = {n["id"]: [] for n in nodes}
    for o in ops:
        for i in o["inputs"] + [o["output"]]:
            neighbours[o["id"]].append(i)
            neighbours[i].append(o["id"])
    columns: dict[int, list] = {}
    for n in nodes:
        columns.setdefault(n["col"], []).append(n)
    for col in columns.values():
        for r, n in enumerate(col):
            n["row"] = r
    by_id = {n["id"]: n for n in nodes}
    for _ in range(4):
        for col in columns.values():
            for n in col:
                rows = [by_id[m]["row"] for m in neighbours[n["id"]]]
                n["_key"] = sum(rows) / len(rows) if rows else n["row"]
            col.sort(key=lambda n: n["_key"])
            for r, n in enumerate(col):
                n["row"] = r
    for n in nodes:
        n.pop("_key", None)


def _finite_differences(order, ops, vid, leaves, grad, root):
    """Central differences of sum(upstream * output), by re-running the recorded ops' forwards
    on copies of the inputs with one entry nudged. Run before the backward frees the graph;
    the gradients are filled in from the engine's .grad afterwards (`_fill_check`)."""
    upstream = np.ones(root.shape) if grad is None else np.asarray(asnumpy(getattr(grad, "data", grad)),
                                                                    dtype=np.float64)
    base = {i: asnumpy(t.data) for i, t in enumerate(order) if t._node is None}
    plan = [(o["fn"], o["params"], o["inputs"], o["output"]) for o in ops]
    out_id = vid[id(root)]
    about = ("Central differences (f(x + h) - f(x - h)) / 2h of the loss, re-running the recorded "
             "ops' forward passes in float64 with one entry of one leaf nudged by h = 1e-6 "
             "(times |x| when that is larger).")

    def loss(inputs):
        vals = dict(inputs)
        for fn, params, ins, out in plan:
            ctx = Context(dict(params), tuple(True for _ in ins))
            vals[out] = fn.forward(ctx, *[vals[i] for i in ins], **params)
        return float(np.sum(upstream * np.asarray(vals[out_id], dtype=np.float64)))

    def as64(a):
        return a.astype(np.float64) if a.dtype.kind == "f" else a

    try:
        start = {i: as64(a) for i, a in base.items()}
        loss(start)
    except Exception as err:  # an op that cannot run in float64: say so instead of guessing
        return {"about": about, "error": f"finite differences not available: {err}",
                "leaves": [], "tolerance": 1e-4}
    result = []
    for i in leaves:
        x = start[i]
        flat = np.arange(x.size)
        if x.size > CHECK_ENTRIES:
            flat = np.unique(np.linspace(0, x.size - 1, CHECK_ENTRIES).round().astype(int))
        entries = []
        for j in flat:
            idx = np.unravel_index(j, x.shape)
            h = 1e-6 * max(1.0, abs(float(x[idx])))
            plus, minus = x.copy(), x.copy()
            plus[idx] += h
            minus[idx] -= h
            fd = (loss({**start, i: plus}) - loss({**start, i: minus})) / (2 * h)
            entries.append({"index": [int(k) for k in idx], "fd": fd})
        skipped = (f"{x.size - len(flat)} of its {x.size} entries not checked (evenly spaced "
                   "sample shown)") if len(flat) < x.size else None
        result.append({"leaf": i, "entries": entries, "skipped": skipped})
    return {"about": about, "leaves": result, "tolerance": 1e-4}


def _fill_check(checked, order, values, prior):
    """Put the engine's gradient (this backward's part of .grad) next to each estimate."""
    for leaf in checked["leaves"]:
        i = leaf.pop("leaf")
        leaf["label"] = values[i]["label"]
        g = order[i].grad
        g = None if g is None else np.asarray(asnumpy(g), dtype=np.float64)
        if g is not None and prior[i] is not None:
            g = g - prior[i]
        for e in leaf["entries"]:
            e["grad"] = 0.0 if g is None else float(g[tuple(e["index"])])


def _write_atomically(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".backprop-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


__all__ = ["to_html", "record_backward"]
