"""`check_invariants`: properties every op's forward and backward must keep, beyond correctness.

- no input is mutated (by forward or backward; on NumPy a backward writing into a saved array
  already fails at the write, as saved arrays are read-only);
- each gradient has its input's shape and dtype;
- no two gradients share memory with each other, with an input or with the cotangent;
- a second backward without zeroing adds exactly the same gradient again (grad doubles exactly:
  2*g is exact in binary floating point, so any difference is a real bug, such as state kept
  between calls or a gradient array mutated after it was handed out).
"""

from __future__ import annotations

import itertools

import numpy as np

from autograd.backend import asnumpy, get_array_module
from autograd.tensor import Tensor


class InvariantError(AssertionError):
    """An op broke one of the invariants above; the message says which."""


def check_invariants(fn, *inputs, seed=0):
    """Run `fn(*inputs)` forward and backward twice and check the invariants above.
    Float inputs are differentiated; others (ids, masks) are passed as constants."""
    leaves = [_leaf(x) for x in inputs]
    before = [asnumpy(t.data).copy() for t in leaves]
    out = fn(*leaves)
    rng = np.random.default_rng(seed)
    xp = get_array_module(out.data)
    cotangent = xp.asarray(rng.standard_normal(out.shape) + 0.5).astype(out.dtype)
    _backward(out, cotangent)
    for i, (t, old) in enumerate(zip(leaves, before)):
        if not np.array_equal(asnumpy(t.data), old, equal_nan=True):
            raise InvariantError(f"input {i} was mutated by forward or backward")
    grads = [(i, t.grad) for i, t in enumerate(leaves) if t.requires_grad]
    for i, g in grads:
        if g is None:
            raise InvariantError(f"input {i} requires grad but got no gradient")
        if g.shape != leaves[i].shape or g.dtype != leaves[i].dtype:
            raise InvariantError(
                f"gradient of input {i} has shape {g.shape} and dtype {g.dtype}; expected "
                f"{leaves[i].shape} and {leaves[i].dtype}"
            )
    arrays = [(f"gradient of input {i}", g) for i, g in grads]
    arrays += [(f"input {i}", t.data) for i, t in enumerate(leaves)]
    arrays += [("the cotangent", cotangent)]
    for (name_a, a), (name_b, b) in itertools.combinations(arrays, 2):
        if "gradient" in name_a and _shares_memory(a, b):
            raise InvariantError(f"{name_a} shares memory with {name_b}")
    first = [asnumpy(g).copy() for _, g in grads]
    _backward(fn(*leaves), cotangent)
    for (i, _), g1 in zip(grads, first):
        if not np.array_equal(asnumpy(leaves[i].grad), 2 * g1, equal_nan=True):
            raise InvariantError(
                f"input {i}: a second backward did not add exactly the same gradient again"
            )
    return True


def _backward(out, cotangent):
    try:
        out.backward(cotangent)
    except ValueError as err:
        # On NumPy, saved arrays are read-only until their node is released (see
        # autograd.function): a backward that writes into one fails there, at the write.
        if "read-only" in str(err):
            raise InvariantError(f"a saved array was mutated by backward: {err}") from err
        raise


def _leaf(x):
    data = x.data if isinstance(x, Tensor) else x
    data = data if hasattr(data, "dtype") else np.asarray(data)
    return Tensor(data, requires_grad=data.dtype.kind == "f")


def _shares_memory(a, b):
    xp = get_array_module(a, b)
    if xp is not get_array_module(a) or xp is not get_array_module(b):
        return False
    return bool(xp.shares_memory(a, b))
