"""`Module` and `Parameter`: how a model keeps track of its weights.

A model is a tree of modules. Each module holds its own parameters and sub-modules as plain
attributes:

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 16)        # a sub-module, found under the name "fc"
            self.out = nn.Linear(16, 2)

        def forward(self, x):
            return self.out(self.fc(x).relu())

There is no registration call: a module finds its children by looking through its own
attributes (`vars(self)`, in the order they were assigned) for `Parameter`s and `Module`s. Names
are joined with dots on the way down, so the weight of `fc` is "fc.weight", and the parameters of
a GPT are "transformer.h.0.attn.c_attn.weight" and so on: the names of a checkpoint.
"""

from __future__ import annotations

from typing import NamedTuple

from autograd import backend
from autograd.function import modifying
from autograd.tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a weight of a model: a leaf that requires grad.

    It is a `Tensor` in every way (ops take it, `.grad` fills on backward); the subclass exists
    so that a `Module` can tell its weights apart from other tensors it happens to hold.
    `Tensor` declares `__slots__`, so this subclass declares an empty one to stay dict-free.
    """

    __slots__ = ()

    def __init__(self, data, requires_grad=True, name=None, dtype=None):
        super().__init__(data, requires_grad=requires_grad, name=name, dtype=dtype)

    def __repr__(self):
        return "Parameter(" + super().__repr__() + ")"


class StateDictError(RuntimeError):
    """`load_state_dict` found keys it could not load; the message lists each one."""


class LoadResult(NamedTuple):
    """What `load_state_dict(strict=False)` could not match, by name."""

    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of every layer and model. Subclasses assign parameters and sub-modules as
    attributes in `__init__` (after `super().__init__()`) and define `forward`."""

    #: True in training mode (dropout active), False after `.eval()`. A class attribute, so a
    #: subclass that forgets `super().__init__()` still has it.
    training = True

    def __init__(self):
        self.training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- walking the tree -------------------------------------------------------------------
    def named_children(self):
        """(name, module) for each direct sub-module, in assignment order."""
        return [(k, v) for k, v in vars(self).items() if isinstance(v, Module)]

    def children(self):
        return [m for _, m in self.named_children()]

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module (name "" at the top) and every module below,
        parents before children. A module reachable twice is listed once."""
        out, seen = [], set()
        stack = [(prefix, self)]
        while stack:  # iterative: a deep model cannot hit the recursion limit
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            out.append((name, module))
            kids = [(f"{name}.{k}" if name else k, m) for k, m in module.named_children()]
            stack.extend(reversed(kids))  # reversed, so children come out in order
        return out

    def modules(self):
        return [m for _, m in self.named_modules()]

    def _named_parameters_all(self, prefix=""):
        """Every (name, parameter), including a shared parameter once under each name."""
        out = []
        for mod_name, module in self.named_modules(prefix):
            for k, v in vars(module).items():
                if isinstance(v, Parameter):
                    out.append((f"{mod_name}.{k}" if mod_name else k, v))
        return out

    def named_parameters(self, prefix=""):
        """(dotted name, parameter) for every parameter, in a fixed order (the order the
        attributes were assigned, depth first). A parameter shared by two modules (tied weights)
        appears once, under the first name, so an optimizer never updates it twice."""
        seen, out = set(), []
        for name, p in self._named_parameters_all(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                out.append((name, p))
        return out

    def parameters(self):
        """The parameters as a list (see `named_parameters`). A list, not a generator, so that it
        can be passed to an optimizer and still be looked at afterwards."""
        return [p for _, p in self.named_parameters()]

    def num_parameters(self, trainable_only=False):
        """How many numbers the model learns (shared parameters counted once)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- modes and gradients -----------------------------------------------------------------
    def train(self, mode=True):
        """Set training mode on this module and every module below it; returns self."""
        for _, m in self.named_modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (dropout off): `train(False)`."""
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (set `.grad` to None, so the next backward stores
        a fresh array instead of adding to zeros)."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag=True):
        """Freeze (`False`) or unfreeze every parameter, e.g. to fine-tune only some layers."""
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def apply(self, fn):
        """Call `fn(module)` on every module (children first, as PyTorch), e.g. for custom init."""
        for _, m in reversed(self.named_modules()):
            fn(m)
        return self

    def to(self, device=None, dtype=None):
        """Move every parameter (and its gradient) to `device` ('cpu' or 'cuda') and/or cast it
        to `dtype`, in place; returns self. Do this before making the optimizer: its moment
        buffers are allocated on the device and in the dtype the parameters have then."""
        for p in self.parameters():
            for attr in ("data", "grad"):
                arr = getattr(p, attr)
                if arr is None:
                    continue
                if device is not None:
                    arr = backend.to_device(arr, backend.check_device(device))
                if dtype is not None and arr.dtype != dtype:
                    arr = arr.astype(dtype)
                setattr(p, attr, arr)
        return self

    # ---- saving and loading ------------------------------------------------------------------
    def state_dict(self):
        """{dotted name: array} for every parameter (tied weights under each of their names).

        The arrays are the parameters' own `.data`, not copies, as in PyTorch: save them right
        away (np.savez) or copy them if you want a snapshot, because training updates them in
        place."""
        return {name: p.data for name, p in self._named_parameters_all()}

    def load_state_dict(self, state, strict=True):
        """Copy arrays from `state` ({name: array or Tensor}) into the parameters, in place.

        Each value is cast to the parameter's dtype and moved to its device. A value whose shape
        differs from the parameter's is always an error. With `strict=True` (the default) a
        parameter missing from `state`, or a name in `state` that the model does not have, is an
        error too; the message names every offending key. With `strict=False` those are
        skipped and returned as `LoadResult(missing_keys, unexpected_keys)`.
        """
        own = dict(self._named_parameters_all())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong_shape = []
        for name, p in own.items():
            if name in state:
                value = state[name]
                value = value.data if isinstance(value, Tensor) else value
                if tuple(value.shape) != tuple(p.shape):
                    wrong_shape.append(
                        f"{name}: checkpoint has {tuple(value.shape)}, model has {tuple(p.shape)}"
                    )
        problems = []
        if wrong_shape:
            problems.append("mis-shaped keys: " + "; ".join(wrong_shape))
        if strict and missing:
            problems.append("missing keys (in the model, not in the state dict): "
                            + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys (in the state dict, not in the model): "
                            + ", ".join(unexpected))
        if problems:
            raise StateDictError(
                f"load_state_dict into {type(self).__name__} failed; nothing was loaded.\n  "
                + "\n  ".join(problems)
            )
        # Check everything first, then copy: a failed load leaves the model untouched.
        for name, p in own.items():
            if name in state:
                value = state[name]
                value = value.data if isinstance(value, Tensor) else value
                value = backend.to_device(value, p.device)
                with modifying(p) as data:
                    data[...] = value.astype(p.dtype, copy=False)
        return LoadResult(missing, unexpected)

    # ---- printing ----------------------------------------------------------------------------
    def extra_repr(self):
        """The arguments shown after the class name in `repr`; layers override this."""
        return ""

    def __repr__(self):
        kids = self.named_children()
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not kids:
            return head + ")"
        lines = [head]
        for name, m in kids:
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after another: `Sequential(a, b, c)(x) == c(b(a(x)))`.
    The children are named "0", "1", ..., so parameter names read "0.weight", "2.bias"."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __len__(self):
        return len(self.named_children())

    def __getitem__(self, i):
        return self.children()[i]

    def __iter__(self):
        return iter(self.children())

    def forward(self, x):
        for m in self:
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters belong to the parent: `self.h = ModuleList(blocks)`
    gives names "h.0.…", "h.1.…". (A plain Python list would hide them from the parent.)"""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, got a {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def __len__(self):
        return len(self.named_children())

    def __getitem__(self, i):
        return self.children()[i]

    def __iter__(self):
        return iter(self.children())
