"""`Function`: the base class of every op, and the `Node` that records one use of it.

An op is a subclass with two static methods over raw arrays (NumPy or CuPy), side by side:

    class Mul(Function):
        '''out = a * b;  VJP: da = g * b,  db = g * a'''
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved
            return g * b, g * a

`Mul.apply(x, y)` runs `forward` on the tensors' arrays and, when a gradient is needed, records a
`Node` on the output so the engine can call `backward` later. Non-array arguments (an axis, an
exponent) are passed as keywords; they are kept in `ctx.params` for display.

`backward` may return a gradient with the *broadcast* shape of the output: the engine undoes the
broadcasting once, for every op (`unbroadcast`), and then checks shape and dtype.
"""

from __future__ import annotations

from autograd.backend import device_of
from autograd.grad_mode import is_grad_enabled

# Op-level hooks, used by autograd.debug (printing, timing, anomaly detection). A forward hook is
# called as hook(fn, ctx, inputs, output); a backward hook as hook(fn, ctx, grad, input_grads).
forward_hooks: list = []
backward_hooks: list = []


class Context:
    """What `forward` leaves for `backward`: saved arrays, the op's keyword params, and which
    inputs need a gradient (`needs_input_grad`), so `backward` can skip work nobody uses."""

    def __init__(self, params, needs_input_grad):
        self.params = params
        self.needs_input_grad = needs_input_grad
        self.saved = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Node:
    """One recorded application of an op: the op, its context and its input tensors."""

    __slots__ = ("fn", "ctx", "inputs", "created_at")

    def __init__(self, fn, ctx, inputs):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.created_at = None  # filled in by debug.detect_anomaly

    @property
    def released(self) -> bool:
        return self.inputs is None

    def release(self):
        """Drop the saved arrays and the links to the inputs, so the graph can be freed."""
        self.ctx = None
        self.inputs = None


class Function:
    """Base class of every op. Subclasses define `forward(ctx, *arrays, **params)` and
    `backward(ctx, grad)`; call them through `apply`."""

    #: every Function subclass ever defined, by "module.QualName" (tests check each has a spec)
    registry: dict[str, type] = {}
    #: short name shown in errors and graphs; defaults to the lower-cased class name
    name: str = "function"
    #: a one-line derivative rule shown by autograd.debug, e.g. "mul: d(a*b)/da = b, d(a*b)/db = a"
    rule: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__.lower()
        Function.registry[f"{cls.__module__}.{cls.__qualname__}"] = cls

    @staticmethod
    def forward(ctx, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on tensors (arrays and scalars are wrapped as constants)."""
        inputs = tuple(x if isinstance(x, Tensor) else Tensor(x) for x in inputs)
        if len(inputs) > 1:
            _check_same_device(cls, inputs)
        needs = tuple(t.requires_grad for t in inputs)
        record = any(needs) and is_grad_enabled()
        ctx = Context(params, needs)
        out = Tensor(cls.forward(ctx, *[t.data for t in inputs], **params))
        if record:
            out.requires_grad = True
            out._node = Node(cls, ctx, inputs)
        if forward_hooks:
            for hook in tuple(forward_hooks):
                hook(cls, ctx, inputs, out)
        return out


def _check_same_device(fn, inputs):
    devices = {device_of(t.data) for t in inputs}
    if len(devices) > 1:
        shown = ", ".join(f"{device_of(t.data)} {tuple(t.shape)}" for t in inputs)
        raise RuntimeError(
            f"{fn.name}: inputs are on different devices ({shown}); "
            "move them with .to(device) first"
        )


def unbroadcast(grad, shape, fn_name="op", input_index=0):
    """Sum `grad` over the axes that broadcasting added or stretched, giving it `shape`.

    Broadcasting copies an input along new leading axes and along axes of size 1; the copies'
    gradients add up, so the VJP of broadcasting is a sum over those axes.
    """
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0 or any(
        n != 1 and n != m for n, m in zip(shape, grad.shape[extra:])
    ):
        raise RuntimeError(
            f"{fn_name}.backward returned a gradient of shape {tuple(grad.shape)} for input "
            f"{input_index} of shape {shape}; the shapes are not broadcast-compatible"
        )
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    return grad.sum(axis=axes).reshape(shape)


from autograd.tensor import Tensor  # noqa: E402  (tensor.py needs Function defined first)
