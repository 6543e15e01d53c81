"""Reverse-mode differentiation: walk the recorded graph from the output back to the leaves.

1. `topological_order` lists every tensor that needs a gradient, inputs before the ops that use
   them. It is iterative (no recursion limit: a chain of 100,000 ops works) and follows each
   node's inputs in their recorded order, so the order is the same on every run.
2. `backward` visits that list in reverse. A tensor's gradient is complete when it is visited,
   because every op that used it comes later in the forward order and so earlier here. Each
   gradient is removed from the table as soon as it is used, and each node's saved arrays are
   released after its backward (unless `retain_graph=True`), so memory falls as the walk goes.
"""

from __future__ import annotations

from autograd.backend import NUMPY_1_PROMOTES_0D, get_array_module
from autograd.function import backward_hooks, fix_0d_promotion, unbroadcast


def topological_order(root, constants=False, stop_at_freed=False):
    """Tensors reachable from `root` that require grad, each after all of its inputs.

    `constants=True` also lists the inputs that need no gradient, and `stop_at_freed=True` ends
    quietly at ops whose graph was already freed: what autograd.debug needs to draw a graph."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        node = t._node
        if node is None or (node.released and stop_at_freed):
            continue
        if node.released:
            raise RuntimeError(
                f"backward through the graph a second time, but the saved arrays of "
                f"'{node.fn.name}' were already freed; pass retain_graph=True to the first "
                "backward() if you need to go through the graph twice"
            )
        for parent in reversed(node.inputs):
            if (constants or parent.requires_grad) and id(parent) not in visited:
                stack.append((parent, False))
    return order


def backward(root, grad=None, retain_graph=False):
    """Accumulate d(root)/d(leaf) (times `grad`) into `.grad` of every leaf that requires it."""
    for _ in iter_backward(root, grad, retain_graph):
        pass


def iter_backward(root, grad=None, retain_graph=False):
    """The backward walk as a generator: after each op's backward it yields
    `(tensor, node, grad, input_grads)`: the op's output, its node (op and inputs), the complete
    gradient of that output and the gradients the op produced for its inputs (after
    unbroadcasting; None where not needed). `autograd.debug.backward_steps` builds on this."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward() on a tensor that does not require grad: no input of the computation "
            "had requires_grad=True (or it ran under no_grad())"
        )
    xp = get_array_module(root.data)
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() on a tensor of shape {tuple(root.shape)} needs a gradient of the same "
                "shape (backward(grad=...)), or reduce it to a scalar first, e.g. .sum()"
            )
        grad = xp.ones_like(root.data)
    else:
        grad = grad.data if hasattr(grad, "_node") else grad
        grad = xp.asarray(grad, dtype=root.dtype)
        if grad.shape != root.shape:
            raise RuntimeError(
                f"backward(grad=...) got shape {tuple(grad.shape)} for a tensor of shape "
                f"{tuple(root.shape)}"
            )
    owned = _Ownership()
    owned.mark_foreign(grad)  # the caller's array: never store it as anyone's .grad
    grads = {id(root): grad}
    order = topological_order(root)
    while order:
        # Popped, not iterated: a visited tensor (and, once its node is released, its array)
        # is freed as soon as nothing else needs it, so memory falls as the walk goes.
        t = order.pop()
        g = grads.pop(id(t), None)
        if g is None:
            continue
        if t._hooks:
            g = _run_hooks(t, g)
        node = t._node
        if node is None or t._retains_grad:
            _accumulate(t, g, owned)
        if node is None:
            continue
        node.check_versions(t)
        input_grads = [
            None if ig is None or not inp.requires_grad else _checked(node.fn, i, ig, inp)
            for i, (inp, ig) in enumerate(zip(node.inputs, _call_backward(node, g)))
        ]
        for inp, ig in zip(node.inputs, input_grads):
            if ig is None:
                continue
            key = id(inp)
            if key in grads:
                grads[key] = grads[key] + ig
            else:
                owned.mark_seen(ig)
                grads[key] = ig
        yield t, node, g, input_grads
        if not retain_graph:
            node.release()


def _call_backward(node, g):
    grads = node.fn.backward(node.ctx, g)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if len(grads) != len(node.inputs):
        raise RuntimeError(
            f"{node.fn.name}.backward returned {len(grads)} gradients for {len(node.inputs)} inputs"
        )
    if backward_hooks:
        for hook in tuple(backward_hooks):
            hook(node.fn, node.ctx, g, grads)
    return grads


def _checked(fn, i, ig, inp):
    """Undo broadcasting, then insist on the input's exact shape and dtype."""
    if not hasattr(ig, "shape"):
        raise RuntimeError(f"{fn.name}.backward returned {type(ig).__name__} for input {i}")
    ig = unbroadcast(ig, inp.shape, fn.name, i)
    if NUMPY_1_PROMOTES_0D and inp.dtype.kind == "f":
        ig = fix_0d_promotion(ig, inp.dtype)
    if ig.dtype != inp.dtype:
        raise RuntimeError(
            f"{fn.name}.backward returned a {ig.dtype} gradient for input {i} of dtype "
            f"{inp.dtype}; gradients must keep their input's dtype (a float64 scalar or a "
            "NumPy default may have promoted it)"
        )
    return ig


def _run_hooks(t, g):
    for hook in t._hooks:
        replaced = hook(g)
        if replaced is not None:
            if replaced.shape != g.shape:
                raise RuntimeError(
                    f"a hook on {t!r} returned a gradient of shape {tuple(replaced.shape)}, "
                    f"expected {tuple(g.shape)}"
                )
            g = replaced
    return g


class _Ownership:
    """Tracks which gradient arrays may be stored as a tensor's `.grad` without a copy.

    An op's backward may hand the same array to two inputs (add returns `g, g`) or return a view
    of its incoming gradient (reshape). Storing such an array twice would make two `.grad`s
    share memory, so the second one, views and the caller's own array are copied instead.
    """

    def __init__(self):
        self.seen = set()
        self.stored = set()

    def mark_foreign(self, arr):
        self.seen.add(id(arr))
        self.stored.add(id(arr))

    def mark_seen(self, arr):
        if id(arr) in self.seen:
            self.stored.add(id(arr))  # handed out twice: whoever stores it must copy
        self.seen.add(id(arr))

    def take(self, arr):
        if id(arr) in self.stored or arr.base is not None:
            return arr.copy()
        self.stored.add(id(arr))
        return arr


def _accumulate(t, g, owned):
    if t.grad is None:
        t.grad = owned.take(g)
    else:
        t.grad = t.grad + g
