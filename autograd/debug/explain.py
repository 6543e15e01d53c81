"""`explain(op)`: what an op computes and how its gradient is computed, from its docstring.

    >>> explain("mul")
    mul  (autograd.ops.elementwise.Mul)
      forward  out = a * b.
      VJP      da = g * b, db = g * a.
      rule     mul: d(a*b)/da = b, d(a*b)/db = a
    ...

Every op's docstring holds its forward formula and its vector-Jacobian product (VJP): given
g = dL/d(out), the gradient of the loss with respect to the output, the VJP says how to get
dL/d(input) for each input. `op` may be the Function subclass, its name ("mul", "layernorm"),
a tensor's `grad_fn`, or a tensor itself. `explain(op, source=True)` also prints the code of
its forward and backward, side by side as they are written.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
import textwrap

from autograd.debug._format import rule_of
from autograd.function import Function
from autograd.ops.reference import reference_for

_VJP = re.compile(r"\bVJP\b[\s:,]*")


def find_op(op):
    """The Function subclass meant by `op`: a subclass, a tensor's grad_fn, a tensor (its
    grad_fn) or a name. Names match `Function.name` or the class name, case-insensitively;
    the library's own ops win over user-defined ones of the same name."""
    if isinstance(op, type) and issubclass(op, Function):
        return op
    if hasattr(op, "grad_fn") and hasattr(op, "data"):  # a Tensor
        if op.grad_fn is None:
            raise ValueError("explain: this tensor is a leaf (no op produced it); pass an op, "
                             "a grad_fn or a tensor computed from others")
        return op.grad_fn
    if hasattr(op, "fn") and isinstance(op.fn, type):  # a graph Node
        return op.fn
    if not isinstance(op, str):
        raise TypeError(f"explain: expected an op, its name or a tensor, got {type(op).__name__}")
    import autograd.functional  # noqa: F401  (registers every library op)

    wanted = op.lower().replace("_", "")
    matches = [cls for cls in Function.registry.values()
               if wanted in (cls.name.lower().replace("_", ""), cls.__name__.lower())]
    matches.sort(key=lambda cls: not cls.__module__.startswith("autograd."))
    if matches:
        return matches[0]
    known = sorted({cls.name for cls in Function.registry.values()})
    close = difflib.get_close_matches(op.lower(), known, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"explain: no op named {op!r}{hint} Known ops: {', '.join(known)}")


def split_docstring(fn):
    """(forward formula, VJP) from an op's docstring: the text before and after 'VJP'."""
    doc = inspect.cleandoc(fn.__doc__ or "")
    match = _VJP.search(doc)
    if match is None:
        return doc, ""
    return doc[: match.start()].strip(), doc[match.end():].strip()


def explanation(op, source=False) -> str:
    """The text that `explain` prints."""
    try:
        fn = find_op(op)
    except ValueError:
        if isinstance(op, str) and reference_for(op):  # not an op, but it has a formula: AdamW
            return _reference_text(op, reference_for(op), source)
        raise
    forward, vjp = split_docstring(fn)
    lines = [f"{fn.name}  ({fn.__module__}.{fn.__qualname__})"]
    lines += _field("forward", forward or "(the docstring gives no formula)")
    lines += _field("VJP", vjp or "(the docstring gives no VJP: add a line 'VJP: da = ...')")
    lines += _field("rule", rule_of(fn))
    lines.append("  g is dL/d(out), the gradient arriving from the ops after this one; the VJP "
                 "gives dL/d(input)")
    lines.append("  for each input: g times the Jacobian d(out)/d(input), without ever building "
                 "that matrix.")
    if source:
        refs = reference_for(fn.name)
        if refs:
            lines += ["", "  the formula as plain NumPy (autograd/ops/reference.py; tested equal to the "
                      "fast code below):"]
            lines += _sources(refs)
            lines += ["", "  the fast code the engine runs:"]
        for method in ("forward", "backward"):
            try:
                code = inspect.getsource(getattr(fn, method))
            except (OSError, TypeError):
                code = f"(source of {method} not available)\n"
            lines.append("")
            lines.append(textwrap.indent(textwrap.dedent(code).rstrip(), "    "))
    return "\n".join(lines)


def _reference_text(name, refs, source):
    lines = [f"{name}  (autograd/ops/reference.py: not an op, a formula the engine applies)"]
    lines += _field("formula", inspect.cleandoc(refs[0].__doc__ or ""))
    if source:
        lines += _sources(refs)
    return "\n".join(lines)


def _sources(functions):
    out = []
    for f in functions:
        out += ["", textwrap.indent(inspect.getsource(f).rstrip(), "    ")]
    return out


def _field(title, text):
    body = text.splitlines() or [""]
    out = [f"  {title:<8} {body[0]}"]
    out += [f"  {'':<8} {line}" for line in body[1:]]
    return out


def explain(op, source=False, file=None):
    """Print an op's forward formula, its VJP and its rule (and its code if `source`)."""
    print(explanation(op, source=source), file=file or sys.stdout)
