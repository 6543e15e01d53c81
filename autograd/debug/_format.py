"""Small formatting helpers shared by the debug tools: short text for arrays, op parameters and
tensors, so that `to_dot`, `tape`, `backward_steps` and the hooks all describe a graph the same
way."""

from __future__ import annotations

import inspect
import os
import re
import sys
import traceback

import numpy as np

from autograd.backend import asnumpy
from autograd.engine import topological_order


def fmt_scalar(v) -> str:
    """A number in at most 4 significant digits: 2, -0.5, 0.1233, 1.5e-08."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.4g}"


def fmt_array(a, max_elements=4) -> str:
    """The values of a small array on one line, or its shape and size for a large one.

    Large arrays are summarised by their largest magnitude: when stepping through backprop that
    is usually what you want to know (is it 0? is it huge?)."""
    a = asnumpy(a)
    if a.ndim == 0:
        return fmt_scalar(a.item())
    if a.size <= max_elements:
        text = np.array2string(a, separator=", ", max_line_width=10**6,
                               formatter={"float_kind": fmt_scalar})
        return " ".join(text.split())
    if a.dtype.kind in "fc" and a.size:
        return f"<{fmt_shape(a.shape)} |max| {fmt_scalar(np.abs(a).max())}>"
    return f"<{fmt_shape(a.shape)} {a.dtype}>"


def fmt_shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def fmt_param(value) -> str:
    """An op's keyword argument: numbers and tuples as written, slices as a:b, arrays in short."""
    if isinstance(value, slice):
        parts = ["" if p is None else str(p) for p in (value.start, value.stop, value.step)]
        return ":".join(parts[:2] if value.step is None else parts)
    if value is Ellipsis:
        return "..."
    if isinstance(value, tuple):
        return "(" + ", ".join(fmt_param(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        if getattr(value, "ndim", 1) == 0:
            return fmt_scalar(asnumpy(value).item())
        if value.size <= 4:
            return fmt_array(value)
        return f"<{value.dtype} {fmt_shape(value.shape)}>"
    if isinstance(value, (float, np.floating)):
        return fmt_scalar(value)
    if isinstance(value, np.dtype) or isinstance(value, type):
        return str(np.dtype(value))
    return repr(value)


def fmt_params(params) -> str:
    """`axis=1, keepdims=True`; None values are left out (they are the defaults)."""
    if not params:
        return ""
    shown = []
    for key, value in params.items():
        if value is None:
            continue
        if key == "index":
            text = fmt_param(value)
            shown.append(f"[{text[1:-1] if isinstance(value, tuple) else text}]")
        else:
            shown.append(f"{key}={fmt_param(value)}")
    return ", ".join(shown)


_rule_prefix = re.compile(r"^\s*[\w.]+\s*:\s*")


def rule_of(fn) -> str:
    """The op's one-line derivative rule, e.g. 'mul: d(a*b)/da = b, d(a*b)/db = a'. Ops without
    a `rule` fall back to the VJP line of their docstring, then to their name."""
    if getattr(fn, "rule", ""):
        return fn.rule
    doc = inspect.cleandoc(fn.__doc__ or "")
    if "VJP:" in doc:
        vjp = " ".join(doc.split("VJP:", 1)[1].split())
        return f"{fn.name}: {vjp}"
    return fn.name


def rule_body(fn) -> str:
    """The rule without its leading 'name:' (the op's name is shown next to it anyway)."""
    return _rule_prefix.sub("", rule_of(fn), count=1)


def arg_names(fn, n):
    """Names of an op's `n` array arguments, read from its forward's signature: ('a', 'b') for
    mul, ('cond', 'a', 'b') for where, ('arrays[0]', ...) for concatenate. The rule strings use
    the same names, so a picture's edge labels match the rule."""
    params = _arg_name_cache.get(fn)
    if params is None:
        try:
            params = list(inspect.signature(fn.forward).parameters.values())[1:]  # drop ctx
        except (TypeError, ValueError):
            params = []
        _arg_name_cache[fn] = params
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in params if p.kind in positional]
    star = next((p.name for p in params if p.kind == inspect.Parameter.VAR_POSITIONAL), None)
    extra = [f"{star}[{i}]" if star else f"input{len(names) + i}"
             for i in range(max(0, n - len(names)))]
    return tuple((names + extra)[:n])


_arg_name_cache: dict = {}


class Namer:
    """Gives every tensor a short, stable label: its `name` when it has one, else a label made
    from the op that produced it and a counter per op ('mul_0', 'mul_1', 'sum_0'), 'leaf_0' for
    an unnamed input and the value itself for a one-element constant ('2').

    Labels are handed out in the order tensors are first seen, so naming a graph's tensors in
    forward order gives the same labels on every run."""

    def __init__(self):
        self._labels = {}  # id(tensor) -> (tensor, label); the tensor is kept so ids stay unique
        self._counts = {}

    def __call__(self, t, kind=None) -> str:
        """The label of `t`; `kind` overrides the op name used for a new label (the tape knows
        which op made a tensor even when no graph was recorded, under no_grad)."""
        if t.name:
            return str(t.name)
        entry = self._labels.get(id(t))
        if entry is not None and entry[0] is t:
            return entry[1]
        if kind is None and t._node is None and not t.requires_grad and t.size == 1:
            return fmt_scalar(asnumpy(t.data).reshape(()).item())
        if kind is None and t._node is not None:
            kind = t._node.fn.name
        elif kind is None:
            kind = "leaf" if t.requires_grad else "const"
        count = self._counts.get(kind, 0)
        self._counts[kind] = count + 1
        label = f"{kind}_{count}"
        self._labels[id(t)] = (t, label)
        return label


def walk(root):
    """Every tensor that `root` was computed from (constants included), each after its inputs,
    stopping quietly at ops whose graph was already freed."""
    return topological_order(root, constants=True, stop_at_freed=True)


# ---- where in the user's code ---------------------------------------------------------------
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_frame(skip=1):
    """The innermost stack frame outside the `autograd` package, as a `traceback.FrameSummary`:
    the line of *your* code that called into the engine."""
    frame = sys._getframe(skip)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR):
            return traceback.FrameSummary(filename, frame.f_lineno, frame.f_code.co_name)
        frame = frame.f_back
    return None


def fmt_frame(summary) -> str:
    """'train.py:12 in step: loss = logits.log().mean()'."""
    if summary is None:
        return "an unknown place"
    line = (summary.line or "").strip()
    filename = summary.filename
    if os.path.isabs(filename) and filename.startswith(os.getcwd() + os.sep):
        filename = os.path.relpath(filename)  # examples/05_...py reads better than /home/...
    where = f"{filename}:{summary.lineno} in {summary.name}"
    return f"{where}: {line}" if line else where
