"""`backward_steps`: run backward one op at a time and look at each step.

    for step in backward_steps(loss):
        print(step)

prints one line per op, in the order the engine visits them (the reverse of the forward order),
for example

    [2] z = mul(a=w, b=x) | grad z = -0.42 | grad w += -0.84, grad x += 1.26 | d(a*b)/da = b, ...

read as: "the op `mul` made z from w and x; the gradient of the loss with respect to z is
-0.42; by the rule d(a*b)/da = b, w's gradient grows by -0.42 * x and x's by -0.42 * w".
It says "+=" because a tensor used by several ops gets one contribution from each: its gradient
is the sum, complete only once every op that used it has had its step.

After the generator is exhausted every leaf's `.grad` is exactly what `backward()` gives: the
steps *are* the backward pass (autograd.engine.iter_backward), paused after each op.
"""

from __future__ import annotations

from autograd.debug._format import (
    Namer,
    arg_names,
    fmt_array,
    fmt_params,
    fmt_shape,
    rule_body,
    rule_of,
    walk,
)
from autograd.engine import iter_backward


class Step:
    """One op's backward, as the engine ran it.

    Attributes:
        index        1 for the first op visited (the one that made the output), 2 for the next...
        op           the Function subclass (`step.op.name` is its short name, e.g. "mul")
        params       its keyword arguments (axis, keepdims, exponent, ...)
        inputs       the input tensors, in the op's argument order
        output       the tensor the op produced
        grad_output  the complete gradient of the loss with respect to `output` (an array)
        grad_inputs  the gradient the op sends to each input (an array, or None for inputs that
                     need none), already summed back over broadcast axes
        rule         the op's derivative rule, e.g. "mul: d(a*b)/da = b, d(a*b)/db = a"

    The arrays are the engine's own: look, don't modify.
    """

    __slots__ = ("index", "op", "params", "inputs", "output", "grad_output", "grad_inputs",
                 "rule", "_labels", "_max_elements")

    def __init__(self, index, op, params, inputs, output, grad_output, grad_inputs, labels,
                 max_elements=4):
        self.index = index
        self.op = op
        self.params = params
        self.inputs = tuple(inputs)
        self.output = output
        self.grad_output = grad_output
        self.grad_inputs = tuple(grad_inputs)
        self.rule = rule_of(op)
        self._labels = labels  # (output label, input labels)
        self._max_elements = max_elements

    @property
    def name(self) -> str:
        """The op's short name ("mul", "sum", ...)."""
        return self.op.name

    @property
    def arg_names(self):
        """The op's argument names ('a', 'b'), as used in its rule."""
        return arg_names(self.op, len(self.inputs))

    def _call(self) -> str:
        out, ins = self._labels
        if len(ins) == 1:
            args = list(ins)
        else:
            args = [f"{a}={label}" for a, label in zip(self.arg_names, ins)]
        params = fmt_params(self.params)
        if params:
            args.append(params)
        return f"{out} = {self.name}({', '.join(args)})"

    def __str__(self) -> str:
        out, ins = self._labels
        m = self._max_elements
        sent = [f"grad {label} += {fmt_array(g, m)}"
                for label, g in zip(ins, self.grad_inputs) if g is not None]
        return (f"[{self.index}] {self._call()} | grad {out} = {fmt_array(self.grad_output, m)}"
                f" | {', '.join(sent) or 'no input needs a gradient'} | {rule_body(self.op)}")

    __repr__ = __str__

    def details(self, max_elements=16) -> str:
        """Several lines: every input, the output and every gradient, with values when small."""
        out, ins = self._labels
        lines = [f"step {self.index}: {self._call()}", f"  rule       {self.rule}"]
        for a, label, t in zip(self.arg_names, ins, self.inputs):
            lines.append(f"  input {a:<4} {label} {_describe(t.data, max_elements)}")
        lines.append(f"  output     {out} {_describe(self.output.data, max_elements)}")
        lines.append(f"  grad {out} (incoming) {_describe(self.grad_output, max_elements)}")
        for a, label, g in zip(self.arg_names, ins, self.grad_inputs):
            shown = "not needed" if g is None else _describe(g, max_elements)
            lines.append(f"  grad {label} ({a}) += {shown}")
        return "\n".join(lines)


def _describe(arr, max_elements):
    shape = fmt_shape(arr.shape) if arr.ndim else "scalar"
    return f"{shape} {fmt_array(arr, max_elements)}"


def backward_steps(tensor, grad=None, retain_graph=False, max_elements=4):
    """Run `tensor.backward(grad)` one op at a time, yielding a `Step` after each op's backward.

    The order is deterministic (the engine's topological order, reversed). Stopping early leaves
    the gradients half accumulated; run the generator to the end (e.g. `list(...)`) to get the
    same `.grad` on every leaf as `backward()`. `max_elements` is how many values a printed
    step shows per array before it switches to a summary.
    """
    names = Namer()
    for t in walk(tensor):  # label every tensor in forward order: mul_0 is the first mul
        names(t)
    index = 0
    for out, node, g, input_grads in iter_backward(tensor, grad, retain_graph):
        index += 1
        labels = (names(out), tuple(names(t) for t in node.inputs))
        yield Step(index, node.fn, dict(node.ctx.params), node.inputs, out, g, input_grads,
                   labels, max_elements)
