"""One property test per registered op, driven by the spec table in op_specs.py:
forward against NumPy, gradcheck on hypothesis-drawn inputs (broadcasting, 0-d, size-1 axes,
non-contiguous views), and the invariants (no mutation, no shared memory, exact accumulation)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd as ag
from autograd.function import Function
from autograd.testing import check_invariants, gradcheck
from autograd.testing import strategies as ags
from tests.autograd.op_specs import SPECS


def _library_ops():
    return sorted(k for k, cls in Function.registry.items() if k.startswith("autograd."))


def test_every_registered_op_has_a_spec():
    import autograd.functional  # noqa: F401  (registers the nn ops too)

    covered = {f"{s.op.__module__}.{s.op.__qualname__}" for s in SPECS}
    missing = [k for k in _library_ops() if k not in covered]
    assert not missing, f"ops without a spec in tests/autograd/op_specs.py: {missing}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.op.__name__)
@given(data=st.data())
def test_op(spec, data):
    arrays, params = spec.draw(data)
    arrays = tuple(data.draw(ags.views(a)) if a.dtype.kind == "f" else a for a in arrays)
    originals = [a.copy() for a in arrays]

    def fn(*tensors):
        return spec.fn(*tensors, **params)

    out = fn(*[ag.Tensor(a) for a in arrays])
    expected = spec.ref(*arrays, **params)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    assert out.shape == np.shape(expected)
    assert out.dtype == np.float64, "an op changed the dtype of float64 inputs"
    for a, b in zip(arrays, originals):
        np.testing.assert_array_equal(a, b)
    gradcheck(fn, *arrays)
    check_invariants(fn, *arrays)
