"""Draw the graph that produced a tensor: `to_dot` gives Graphviz DOT text (no dependency),
`render` turns it into an SVG or PNG file when Graphviz is installed.

    from autograd.debug import to_dot, render
    print(to_dot(loss))            # paste into any Graphviz viewer
    render(loss, "loss.png")       # needs the `dot` program (apt/brew/conda install graphviz)

The picture has two kinds of node, as the engine has:

- value nodes (boxes) are tensors: name, shape and dtype and, when small, data and grad.
  Inputs that need a gradient are blue, constants are dashed grey, the output has a bold border.
- op nodes (orange ovals) are the recorded ops, labelled with the op and its arguments (axis,
  keepdims, ...). Edges into an op are labelled with the argument they fill ('a', 'b', as in the
  op's rule), so `sub` and `div` can be read the right way round.

Draw before calling `backward()`, or call `backward(retain_graph=True)`: backward frees each
op's record as it goes (a training step must not keep the graph alive), and a freed op has no
inputs left to draw. To see an intermediate's gradient, call `retain_grad()` on it first.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from autograd.debug._format import (
    arg_names,
    fmt_array,
    fmt_params,
    fmt_shape,
    walk,
)

DEFAULT_SHOW = ("name", "shape", "data", "grad")

_LEAF = 'style="filled", fillcolor="#dbe9fb"'
_CONST = 'style="dashed", color="#888888", fontcolor="#555555"'
_VALUE = 'style="solid"'
_OP = 'shape=ellipse, style="filled", fillcolor="#fde3bd", color="#c77c12"'


class GraphvizNotFound(RuntimeError):
    """`render` needs Graphviz's `dot` program and could not find it."""


_HOW_TO_GET_GRAPHVIZ = (
    "render() needs the Graphviz 'dot' program to turn DOT text into a picture, and it is not "
    "installed (not found on PATH).\n"
    "Install it with your system's package manager:\n"
    "    Debian/Ubuntu:  sudo apt-get install graphviz\n"
    "    macOS:          brew install graphviz\n"
    "    conda:          conda install -c conda-forge graphviz\n"
    "    Windows/other:  https://graphviz.org/download/\n"
    "The Python package (pip install graphviz) is optional and needs 'dot' as well.\n"
    "Without either, to_dot(tensor) still gives the DOT text: paste it into an online viewer "
    "such as https://dreampuf.github.io/GraphvizOnline/ ."
)


def to_dot(tensor, show=DEFAULT_SHOW, max_elements=6, rankdir="LR", title=None) -> str:
    """The graph that produced `tensor`, as Graphviz DOT text.

    show: which facts to print on value nodes, from "name", "shape" (with the dtype), "data" and
          "grad"; data and grad only when the tensor has at most `max_elements` elements.
    rankdir: "LR" draws left to right (inputs on the left), "TB" top to bottom.
    Node ids follow the forward order (v0, v1, ...), so the text is the same on every run.
    """
    show = set(show)
    unknown = show - set(DEFAULT_SHOW)
    if unknown:
        raise ValueError(f"to_dot: unknown show={sorted(unknown)}; choose from {DEFAULT_SHOW}")
    order = walk(tensor)
    ids = {id(t): f"v{i}" for i, t in enumerate(order)}
    lines = [
        "digraph autograd {",
        f"  rankdir={rankdir};",
        '  node [shape=box, fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#555555", arrowsize=0.7];',
    ]
    if title:
        lines.append(f'  labelloc="t"; label="{_escape(title)}";')
    for i, t in enumerate(order):
        style = _LEAF if t._node is None and t.requires_grad else (
            _CONST if t._node is None else _VALUE)
        if t is tensor:
            style += ", penwidth=2"
        lines.append(f'  v{i} [label="{_escape(_value_label(t, show, max_elements))}", {style}];')
        node = t._node
        if node is None:
            continue
        op = f"op{i}"
        if node.released:
            label = f"{node.fn.name}\n(freed by backward)"
            lines.append(f'  {op} [label="{_escape(label)}", {_OP}];')
        else:
            params = fmt_params(node.ctx.params)
            label = node.fn.name + (f"\n{params}" if params else "")
            lines.append(f'  {op} [label="{_escape(label)}", {_OP}];')
            names = arg_names(node.fn, len(node.inputs))
            for name, inp in zip(names, node.inputs):
                edge_label = f' [label="{_escape(name)}"]' if len(node.inputs) > 1 else ""
                lines.append(f"  {ids[id(inp)]} -> {op}{edge_label};")
        lines.append(f"  {op} -> v{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _value_label(t, show, max_elements) -> str:
    rows = []
    if "name" in show and t.name:
        rows.append(str(t.name))
    if "shape" in show:  # 0-d tensors are common in small examples: say "scalar"
        rows.append(f"{fmt_shape(t.shape) if t.ndim else 'scalar'} {t.dtype}")
    if t._node is None and not t.requires_grad:
        rows.insert(0, "constant")
    small = t.size <= max_elements
    if "data" in show and small:
        rows.append(f"data {fmt_array(t.data, max_elements)}")
    if "grad" in show and small and t.grad is not None:
        rows.append(f"grad {fmt_array(t.grad, max_elements)}")
    return "\n".join(rows) or " "


def _escape(text: str) -> str:
    """Quote text for a DOT string: backslashes and quotes escaped, newlines as \\n."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(tensor, path, format=None, **to_dot_kwargs):
    """Draw the graph of `tensor` into `path` (SVG, PNG, PDF, ... by its suffix, or `format`).

    Uses the Python `graphviz` package when it is installed, else runs the `dot` program
    directly; raises `GraphvizNotFound`, saying how to install Graphviz, when neither works.
    Returns the path written. Keyword arguments go to `to_dot` (show, max_elements, rankdir).
    """
    path = os.fspath(path)
    fmt = format or os.path.splitext(path)[1].lstrip(".").lower() or "svg"
    source = to_dot(tensor, **to_dot_kwargs)
    image = _run_graphviz(source, fmt)
    with open(path, "wb") as f:
        f.write(image)
    return path


def _run_graphviz(source: str, fmt: str) -> bytes:
    try:
        import graphviz
    except ImportError:
        graphviz = None
    if graphviz is not None:
        try:
            return graphviz.Source(source).pipe(format=fmt)
        except graphviz.ExecutableNotFound as err:
            raise GraphvizNotFound(_HOW_TO_GET_GRAPHVIZ) from err
    dot = _find_dot()
    if dot is None:
        raise GraphvizNotFound(_HOW_TO_GET_GRAPHVIZ)
    done = subprocess.run([dot, f"-T{fmt}"], input=source.encode(), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _find_dot():
    """The path of the `dot` program, or None (a function so tests can pretend it is missing)."""
    return shutil.which("dot")
