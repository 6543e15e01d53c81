"""Tools for stepping through backprop by hand.

    from autograd.debug import to_dot, render, backward_steps, tape, detect_anomaly, explain

    to_dot(loss)                  # the graph as Graphviz DOT text (no dependency)
    render(loss, "loss.svg")      # ... drawn to a file (needs Graphviz's `dot` program)
    for step in backward_steps(loss):
        print(step)               # one line per op: inputs, incoming gradient, what it sends back
    with tape() as t:             # the forward ops, in order
        loss = model(x)
    print(t)
    with detect_anomaly():        # stop at the first NaN or inf, naming the op and your line
        loss.backward()
    explain("softmax")            # an op's forward formula and vector-Jacobian product
    to_html(loss, "backprop.html")  # click through the backward in a browser (runs backward)
    with print_ops(): ...         # print every forward and backward call (see hooks.py)
    with check_dtypes(): ...      # stop at the first op that silently changes the float dtype

Tensor hooks (`t.register_hook(fn)`) and `t.retain_grad()` are methods of `Tensor`.
Nothing here changes what the engine computes: each tool reads the graph, or listens through
the op-level hooks in `autograd.function`.
"""

from autograd.debug.anomaly import AnomalyError, detect_anomaly, is_anomaly_enabled
from autograd.debug.dtype_guard import DtypeError, check_dtypes
from autograd.debug.explain import explain, explanation
from autograd.debug.graph import GraphvizNotFound, render, to_dot
from autograd.debug.hooks import op_hooks, print_grad, print_ops, retain_grads, time_ops
from autograd.debug.html import to_html
from autograd.debug.steps import Step, backward_steps
from autograd.debug.tape import Tape, TapeEntry, tape

__all__ = [
    "to_dot", "render", "GraphvizNotFound", "backward_steps", "Step", "tape", "Tape",
    "TapeEntry", "op_hooks", "print_ops", "time_ops", "print_grad", "retain_grads",
    "detect_anomaly",
    "AnomalyError", "is_anomaly_enabled", "explain", "explanation", "check_dtypes", "DtypeError",
    "to_html",
]
