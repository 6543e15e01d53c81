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
When a node is recorded, each tensor whose array `forward` saved (an input, or the output) is
*watched*, with the memory that array is a view of (`w.T` saved means `w`'s memory is at stake):
- In-place updates made the sanctioned way (an optimizer step, `Module.load_state_dict`; see
  `modifying`) count as writes of that memory, and raise the tensor's version (`_version`, as
  in PyTorch). The engine refuses to run the backward of a node whose watched memory was
  written since the forward, naming the op and the tensor. This works on NumPy and CuPy alike.
- On NumPy, watched memory is also made read-only (`flags.writeable = False` on the array that
  owns it, restored when the last node watching it is released or freed), so a raw write such
  as `w.data[...] = 0` fails at once instead of corrupting a later backward. CuPy arrays have no
  such flag: there, the write count is the only guard.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from autograd.backend import NUMPY_1_PROMOTES_0D, device_of
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

    `watched` lists, for each array this node watches (see the module docstring), the array,
    how many times it had been written when the node was recorded, which tensor it belongs to
    (an input index, or None for the output) and that tensor's version then."""

    __slots__ = ("fn", "ctx", "inputs", "created_at", "watched")

    def __init__(self, fn, ctx, inputs):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.created_at = None  # filled in by debug.detect_anomaly
        self.watched = ()

    @property
    def released(self) -> bool:
        return self.inputs is None

    def watch_saved(self, out):
        """Watch the arrays of the tensors whose data `forward` saved, and their owners."""
        saved = self.ctx.saved
        if not saved:
            return
        watched = []
        for who, t in (*enumerate(self.inputs), (None, out)):
            arr = t.data
            owner = _owner(arr)
            mine = owner if owner is not None else arr
            if not any(s is arr or getattr(s, "base", None) is mine for s in saved):
                continue
            watched.append((arr, _watch(arr), who, t._version))
            if owner is not None:
                watched.append((owner, _watch(owner), who, t._version))
        self.watched = watched

    def check_versions(self, out):
        """Raise if memory this node saved was written in place since the forward."""
        for arr, writes, who, version in self.watched:
            if _locks[id(arr)][2] == writes:
                continue
            t = out if who is None else self.inputs[who]
            where = "its output" if who is None else f"input {who}"
            if t._version != version:
                what = (f"was modified in place after the forward pass (version {t._version}, "
                        f"the forward saw version {version})")
            else:  # written through another tensor: t is a view of it (w.T), or it of t
                what = "shares memory with a tensor that was modified in place after the forward"
            raise RuntimeError(
                f"{self.fn.name}: {where} ({_describe(t)}) {what}, but the backward of "
                f"'{self.fn.name}' needs the values of the forward. Run backward() before "
                "changing it (e.g. before optimizer.step()), or recompute the forward after "
                "the change"
            )

    def release(self):
        """Drop the saved arrays and the links to the inputs, so the graph can be freed."""
        self.ctx = None
        self.inputs = None
        self._unlock_all()

    def _unlock_all(self):
        watched, self.watched = self.watched, ()
        for arr, *_ in watched:
            _unwatch(arr)

    def __del__(self):
        # A graph dropped without a backward must give its arrays back their writeability.
        try:
            self._unlock_all()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _owner(arr):
    """The array that owns the memory `arr` is a view of; None when `arr` owns it (or when the
    owner is not an array, e.g. the mmap under a np.memmap)."""
    base = getattr(arr, "base", None)
    return base if base is not None and hasattr(base, "dtype") else None


def _describe(t):
    label = f"'{t.name}', " if t.name else ""
    kind = "a leaf" if t.is_leaf else f"the output of '{t._node.fn.name}'"
    return f"{label}{kind} of shape {tuple(t.shape)} and dtype {t.dtype}"


# Arrays watched by live nodes: {id(array): [array, watchers, writes, made_read_only]}. An entry
# lives while a node watches the array (so its id stays unique), counting the sanctioned writes
# (`modifying`). Only NumPy arrays that own their memory and were writeable are made read-only
# (a view's flag cannot be restored while its owner is read-only), and each is made writeable
# again when its last watcher lets go, so an array someone else made read-only stays so.
_locks: dict[int, list] = {}
# Graphs built on several threads at once (autograd.nn.shards) watch the same weights: the count
# is read, changed and written back under this lock. Re-entrant, because the garbage collector
# may free a node (Node.__del__ -> _unwatch) in the middle of _watch on the same thread.
_locks_guard = threading.RLock()


def _watch(arr) -> int:
    """Watch `arr` on behalf of one more node; returns its write count so far."""
    with _locks_guard:
        entry = _locks.get(id(arr))
        if entry is None:
            flags = arr.flags if type(arr) is np.ndarray and arr.base is None else None
            flip = flags is not None and flags.writeable
            if flip:  # CuPy arrays have no flag; read-only arrays are someone else's choice
                flags.writeable = False
            entry = _locks[id(arr)] = [arr, 0, 0, flip]
        entry[1] += 1
        return entry[2]


def _unwatch(arr):
    with _locks_guard:
        entry = _locks.get(id(arr))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _locks[id(arr)]
            if entry[3]:
                arr.flags.writeable = True


@contextlib.contextmanager
def modifying(tensor):
    """Change `tensor.data` in place, as an optimizer does: the array is writeable inside the
    block even when a live graph saved it, and the tensor's version goes up, so a backward
    through such a graph is refused instead of using the new values.

        with modifying(p):
            p.data -= lr * p.grad
    """
    arr, owner = tensor.data, _owner(tensor.data)
    with _locks_guard:
        entries = [_locks[id(a)] for a in (arr, owner) if a is not None and id(a) in _locks]
    frozen = [e for e in entries if e[3]]
    for e in frozen:
        e[0].flags.writeable = True
    try:
        yield arr
    finally:
        tensor._version += 1
        with _locks_guard:
            for e in entries:
                e[2] += 1
            for e in frozen:
                if _locks.get(id(e[0])) is e:  # still watched (no node let go inside the block)
                    e[0].flags.writeable = False


class Function:
    """Base class of every op. Subclasses define `forward(ctx, *arrays, **params)` and
    `backward(ctx, grad)`; call them through `apply`."""

    #: every Function subclass ever defined, by "module.QualName" (tests check each has a spec)
    registry: dict[str, type] = {}
    #: short name shown in errors and graphs; defaults to the lower-cased class name
    name: str = "function"
    #: a one-line derivative rule shown by autograd.debug, e.g. "mul: d(a*b)/da = b, d(a*b)/db = a"
    rule: str = ""
    #: False for an op that changes the float dtype on purpose (Cast); see `fix_0d_promotion`
    keeps_dtype: bool = True

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
        result = cls.forward(ctx, *[t.data for t in inputs], **params)
        if NUMPY_1_PROMOTES_0D and cls.keeps_dtype:
            result = fix_0d_promotion(result, inputs)
        out = Tensor(result)
        if record:
            out.requires_grad = True
            out._node = Node(cls, ctx, inputs)
            out._node.watch_saved(out)
        if forward_hooks:
            for hook in tuple(forward_hooks):
                hook(cls, ctx, inputs, out)
        return out


def fix_0d_promotion(arr, like):
    """`arr` cast to the float dtype of `like` (tensors or a dtype) when NumPy 1.x promoted a 0-d
    result; anything else unchanged. (See backend.NUMPY_1_PROMOTES_0D: the ops are written for
    NEP 50; on NumPy 1.x the engine puts 0-d results, forward outputs in `apply` and gradients
    in engine._checked, back into their inputs' float dtype.)"""
    if getattr(arr, "ndim", 1) != 0 or arr.dtype.kind != "f":
        return arr
    if isinstance(like, tuple):
        floats = {t.dtype for t in like if t.dtype.kind == "f"}
        if len(floats) != 1:
            return arr
        (like,) = floats
    return arr.astype(like) if arr.dtype.itemsize > like.itemsize else arr


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
