"""`Optimizer`: the base class that SGD and AdamW share.

An optimizer holds the parameters in *groups*. Each group is a dict with the parameters and the
hyperparameters that apply to them, so different parameters can be treated differently; the
usual case is to exempt biases and norm gains from weight decay:

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = AdamW([{"params": decay, "weight_decay": 0.1},
                 {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)

Hyperparameters missing from a group are taken from the optimizer's defaults (the keyword
arguments). A group may also carry "lr_scale": `set_lr(lr)` then gives that group lr * lr_scale.

Each parameter has a `state` dict (momentum, moment estimates, a step count), made on its first
update. `state_dict()` gives everything as plain arrays and numbers, naming parameters by their
position (0, 1, ... across the groups in order), so it can be saved with np.savez and json, and
loaded into a fresh optimizer over the same model.

The updates are written in place on `p.data` with `out=` arguments, one scratch buffer per
parameter, and the array module of the data (`get_array_module`), so they run on NumPy and CuPy
arrays alike and allocate nothing full-size after the first step.
"""

from __future__ import annotations

from autograd import backend
from autograd.backend import get_array_module, to_device
from autograd.function import modifying
from autograd.tensor import Tensor


class Optimizer:
    """Base class: param groups, `zero_grad`, `step`, `state_dict` / `load_state_dict`.

    Subclasses define `update(p, grad, group, state)`, which changes `p.data` in place;
    `step()` calls it for every parameter that has a gradient.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # {parameter: {name: array or number}}, keyed by the Parameter object
        self._scratch = {}  # {parameter or (device, dtype): array}: work space, never saved
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of tensors (or of dicts), got a Tensor; "
                            "pass [p] or model.parameters()")
        params = list(params)
        if not params:
            raise ValueError("the optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a dict {"params": [...], hyperparameter: value, ...}; defaults fill the rest."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a param group is a dict with a 'params' list")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer params must be Tensors, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError("an optimizer parameter does not require grad")
            if not p.is_leaf:
                raise ValueError("an optimizer parameter must be a leaf tensor (a weight), "
                                 "not the result of an op")
            if id(p) in seen:
                raise ValueError("a parameter appears twice in the optimizer's groups "
                                 "(each may be in only one group, once)")
            seen.add(id(p))
        full = {**self.defaults, **group, "params": params}
        self._check_hyperparameters(full)
        self.param_groups.append(full)

    def _check_hyperparameters(self, group):
        if group.get("lr", 0.0) < 0.0:
            raise ValueError(f"invalid learning rate {group['lr']}")
        if group.get("weight_decay", 0.0) < 0.0:
            raise ValueError(f"invalid weight_decay {group['weight_decay']}")

    def zero_grad(self):
        """Drop every parameter's gradient (set to None), ready for the next backward."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def set_lr(self, lr):
        """Set the learning rate of every group to `lr` (times the group's "lr_scale", if it has
        one). Call once per step with a schedule: `opt.set_lr(warmup_cosine(step, ...))`."""
        for group in self.param_groups:
            group["lr"] = float(lr) * float(group.get("lr_scale", 1.0))

    def step(self):
        """Update every parameter that has a gradient, in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                # Raises p's version: a graph recorded before the step can no longer backward.
                with modifying(p):
                    self.update(p, p.grad, group, state)

    def update(self, p, grad, group, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def block_scratch(self, p):
        """A work buffer of one block (backend.BLOCK_ELEMENTS), shared by all parameters of the
        same dtype and device: enough for updates done block by block."""
        key = (p.device, p.dtype)
        buf = self._scratch.get(key)
        if buf is None or buf.size < backend.BLOCK_ELEMENTS:
            buf = get_array_module(p.data).empty(backend.BLOCK_ELEMENTS, p.dtype)
            self._scratch[key] = buf
        return buf

    def scratch(self, p):
        """A work buffer shaped like `p`, allocated once and reused on every step."""
        buf = self._scratch.get(p)
        if buf is None:
            buf = self._scratch[p] = get_array_module(p.data).empty_like(p.data)
        return buf

    # ---- saving and loading ------------------------------------------------------------------
    def _all_params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """{"state": {index: {name: array or number}}, "param_groups": [{hyperparameters,
        "params": [indices]}]}: plain arrays, numbers and lists, no pickling needed.

        The arrays are the optimizer's live buffers (not copies, as in PyTorch): save them right
        away, or copy them for a snapshot."""
        index = {id(p): i for i, p in enumerate(self._all_params())}
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if s}
        groups = []
        for group in self.param_groups:
            g = {k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in group.items() if k != "params"}
            g["params"] = [index[id(p)] for p in group["params"]]
            groups.append(g)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state saved by `state_dict()` into an
        optimizer built over the same parameters (same groups, same sizes, same order).
        Arrays are copied (onto each parameter's device, in its dtype), never aliased."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"the state dict has {len(saved_groups)} param groups, this "
                             f"optimizer has {len(self.param_groups)}")
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {i} has {len(saved['params'])} parameters in the "
                                 f"state dict and {len(group['params'])} here")
        params = self._all_params()
        new_state = {}
        for key, saved in state_dict["state"].items():
            p = params[int(key)]  # json turns int keys into strings
            xp = get_array_module(p.data)
            entry = {}
            for name, value in saved.items():
                if hasattr(value, "shape") and value.ndim == 0 and value.dtype.kind in "iub":
                    value = value.item()  # a count (the step) that went through np.savez
                elif hasattr(value, "shape") and value.shape == p.shape:
                    value = xp.array(to_device(value, p.device), dtype=p.dtype, order="C")
                elif hasattr(value, "shape"):
                    raise ValueError(f"state '{name}' of parameter {key} has shape "
                                     f"{tuple(value.shape)}, the parameter {tuple(p.shape)}")
                entry[name] = value
            new_state[p] = entry
        for saved, group in zip(saved_groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = tuple(v) if isinstance(v, list) else v
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for i, group in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {hyper}")
        return "\n".join(lines) + "\n)"
