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

Saved arrays must not change between forward and backward, or the gradient is silently wrong.
Two guards, one per kind of write:
- Every tensor has a version counter (`Tensor._version`), raised by each sanctioned in-place
  update (an optimizer step, `Module.load_state_dict`; see `modifying`). A node remembers the
  versions of the tensors whose arrays it saved, and the engine refuses to run its backward when
  one has changed, naming the op and the tensor. This works on NumPy and CuPy alike.
- On NumPy, the saved arrays that belong to tensors are also made read-only while a node holds
  them (`flags.writeable = False`, restored when the node is released or freed), so a raw write
  such as `w.data[...] = 0` fails at once instead of corrupting a later backward. CuPy arrays
  have no such flag: there, only the version counter guards.
"""

from __future__ import annotations

import contextlib

import numpy as np

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
    """One recorded application of an op: the op, its context and its input tensors.

    `versions` lists (input index, version) for each input whose array the op saved, and
    `out_version` the output's version when the op saved its own output (else None): the
    engine compares them with the tensors' versions before running the backward. `locked`
    holds the arrays made read-only for this node (see the module docstring)."""

    __slots__ = ("fn", "ctx", "inputs", "created_at", "versions", "out_version", "locked")

    def __init__(self, fn, ctx, inputs):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.created_at = None  # filled in by debug.detect_anomaly
        self.versions = ()
        self.out_version = None
        self.locked = ()

    @property
    def released(self) -> bool:
        return self.inputs is None

    def watch_saved(self, out):
        """Note which tensors' arrays `forward` saved: remember their versions, lock them."""
        saved = self.ctx.saved
        if not saved:
            return
        locked, versions = [], []
        for i, t in enumerate(self.inputs):
            if _is_saved(t.data, saved):
                versions.append((i, t._version))
                locked.append(t.data)
        if any(s is out.data for s in saved):
            self.out_version = out._version
            locked.append(out.data)
        self.versions = tuple(versions)
        self.locked = tuple(a for a in locked if _lock(a))

    def check_versions(self, out):
        """Raise if a tensor whose array this node saved was changed in place since forward."""
        stale = [(f"input {i}", self.inputs[i], v) for i, v in self.versions
                 if self.inputs[i]._version != v]
        if self.out_version is not None and out._version != self.out_version:
            stale.append(("its output", out, self.out_version))
        if stale:
            where, t, v = stale[0]
            raise RuntimeError(
                f"{self.fn.name}: {where} ({_describe(t)}) was modified in place after the "
                f"forward pass (version {t._version}, the forward saw version {v}), but the "
                f"backward of '{self.fn.name}' needs its values from the forward. Run "
                "backward() before changing it (e.g. before optimizer.step()), or recompute "
                "the forward after the change"
            )

    def release(self):
        """Drop the saved arrays and the links to the inputs, so the graph can be freed."""
        self.ctx = None
        self.inputs = None
        self._unlock_all()

    def _unlock_all(self):
        locked, self.locked = self.locked, ()
        for a in locked:
            _unlock(a)

    def __del__(self):
        # A graph dropped without a backward must give its arrays back their writeability.
        try:
            self._unlock_all()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _is_saved(arr, saved):
    """Whether `arr` (a tensor's array) is among the saved arrays, or one is a view of it."""
    owner = getattr(arr, "base", None)
    owner = arr if owner is None else owner
    return any(s is arr or getattr(s, "base", None) is owner for s in saved)


def _describe(t):
    label = f"'{t.name}', " if t.name else ""
    kind = "a leaf" if t.is_leaf else f"the output of '{t._node.fn.name}'"
    return f"{label}{kind} of shape {tuple(t.shape)} and dtype {t.dtype}"


# Arrays made read-only because a live node saved them: {id(array): [array, holders]}. Only
# arrays that were writeable are taken in, and each is made writeable again when its last
# holder lets go, so an array someone else made read-only stays so.
_locks: dict[int, list] = {}


def _lock(arr) -> bool:
    """Make a NumPy array read-only on behalf of one more node; False when not ours to lock."""
    entry = _locks.get(id(arr))
    if entry is not None:
        entry[1] += 1
        return True
    if not isinstance(arr, np.ndarray) or not arr.flags.writeable:
        return False  # CuPy arrays have no flag; read-only arrays are someone else's choice
    arr.flags.writeable = False
    _locks[id(arr)] = [arr, 1]
    return True


def _unlock(arr):
    entry = _locks.get(id(arr))
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _locks[id(arr)]
        try:
            arr.flags.writeable = True
        except ValueError:  # a view whose base another node still holds read-only
            pass


@contextlib.contextmanager
def modifying(tensor):
    """Change `tensor.data` in place, as an optimizer does: the array is writeable inside the
    block even when a live graph saved it, and the tensor's version goes up, so a backward
    through such a graph is refused instead of using the new values.

        with modifying(p):
            p.data -= lr * p.grad
    """
    arr = tensor.data
    entry = _locks.get(id(arr))
    if entry is not None:
        arr.flags.writeable = True
    try:
        yield arr
    finally:
        tensor._version += 1
        if entry is not None and _locks.get(id(arr)) is entry:
            arr.flags.writeable = False


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
            _check_same_float_dtype(cls, inputs)
        if params:
            params = {k: _plain(v) for k, v in params.items()}
        needs = tuple(t.requires_grad for t in inputs)
        record = any(needs) and is_grad_enabled()
        ctx = Context(params, needs)
        out = Tensor(cls.forward(ctx, *[t.data for t in inputs], **params))
        if record:
            out.requires_grad = True
            out._node = Node(cls, ctx, inputs)
            out._node.watch_saved(out)
        if forward_hooks:
            for hook in tuple(forward_hooks):
                hook(cls, ctx, inputs, out)
        return out


def _plain(value):
    """A NumPy scalar parameter as the Python number it holds. np.float64 is a subclass of
    float, but under NumPy 2's promotion rules (NEP 50) it turns float32 arrays into float64,
    where a Python float keeps their dtype (and NumPy 1 decided by value): plain numbers
    behave the same everywhere."""
    return value.item() if isinstance(value, np.generic) and value.dtype.kind in "biuf" else value


def _check_same_float_dtype(fn, inputs):
    """Refuse inputs of different float dtypes, naming them.

    NumPy would promote (float32 with float64 gives float64), and then the op's gradient for
    the float32 input would come back float64, or the whole model would quietly run in float64
    from that op on. Casting is the caller's decision: `x.astype(np.float32)`. Integer and
    boolean inputs (ids, masks, targets) may sit next to any float."""
    floats = {t.dtype for t in inputs if t.dtype.kind in "fc"}
    if len(floats) > 1:
        from autograd.debug._format import arg_names

        names = arg_names(fn, len(inputs))
        shown = ", ".join(f"{n} {t.dtype} {tuple(t.shape)}" for n, t in zip(names, inputs))
        raise TypeError(
            f"{fn.name}: inputs of different float dtypes ({shown}); cast one with "
            ".astype(...) so they match (ops never promote: a float64 input would make the "
            "gradient of a float32 weight float64)"
        )


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
