"""One property test per registered op, driven by the spec table in op_specs.py:
forward against NumPy, gradcheck on hypothesis-drawn inputs (broadcasting, 0-d, size-1 axes,
non-contiguous views), and the invariants (no mutation, no shared memory, exact accumulation)."""

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd as ag
from autograd import backend, parallel
from autograd.function import Function
from autograd.ops import attention, causal_attention
from autograd.ops import elementwise as E
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


# ---- the blocked paths, with blocks small enough that every drawn input spans several ----------
BLOCKED = [s for s in SPECS if s.op.__name__ in ("Gelu", "LayerNorm", "ScaledDotProductAttention",
                                                  "QKVAttention")]


@contextlib.contextmanager
def small_blocks(elements, score_bytes):
    """Shrink the block constants (GELU and LayerNorm: backend.BLOCK_ELEMENTS; attention:
    _BLOCK_BYTES, and the causal kernel's query tiles), so hypothesis's small inputs run the
    multi-block code with a ragged last block, and causal attention several tiles. With the real
    sizes (64k elements, 1 MB, tiles of 2 x head_dim rows) every drawn input is one block."""
    ca = causal_attention
    old = backend.BLOCK_ELEMENTS, attention._BLOCK_BYTES, ca._BLOCK_BYTES, ca._QUERY_TILE
    backend.BLOCK_ELEMENTS, attention._BLOCK_BYTES = elements, score_bytes
    ca._BLOCK_BYTES, ca._QUERY_TILE = score_bytes, 2
    try:
        yield
    finally:
        backend.BLOCK_ELEMENTS, attention._BLOCK_BYTES, ca._BLOCK_BYTES, ca._QUERY_TILE = old


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("blocks", [(2, 1), (3, 100)], ids=["tiny", "ragged"])
@pytest.mark.parametrize("spec", BLOCKED, ids=lambda s: s.op.__name__)
@given(data=st.data())
def test_op_in_small_blocks(spec, blocks, threads, data):
    """Many blocks, on one thread and on two (autograd.parallel hands the blocks out)."""
    before = parallel.num_threads()
    parallel.set_num_threads(threads)
    try:
        with small_blocks(*blocks):
            test_op.hypothesis.inner_test(spec, data)
    finally:
        parallel.set_num_threads(before)


# ---- every op in float32: the dtype is kept forward and backward ------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.op.__name__)
@given(data=st.data())
def test_op_in_float32(spec, data):
    arrays, params = spec.draw(data)
    wide = [ag.Tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    narrow = [ag.Tensor(a.astype(np.float32) if a.dtype.kind == "f" else a,
                        requires_grad=a.dtype.kind == "f") for a in arrays]
    out64, out32 = spec.fn(*wide, **params), spec.fn(*narrow, **params)
    casts_up = spec.op is E.Cast  # the float32 variant casts to float64 on purpose
    assert out32.dtype == (np.float64 if casts_up else np.float32), f"{spec.op.__name__} output"
    np.testing.assert_allclose(out32.data, out64.data, rtol=1e-4, atol=1e-4)
    cotangent = np.random.default_rng(0).standard_normal(out64.shape) + 0.5
    out64.backward(cotangent)
    out32.backward(cotangent.astype(out32.dtype))
    for i, (t64, t32) in enumerate(zip(wide, narrow)):
        if t32.requires_grad:
            assert t32.grad.dtype == np.float32, f"gradient of input {i} is {t32.grad.dtype}"
            np.testing.assert_allclose(t32.grad, t64.grad, rtol=1e-3, atol=1e-3)
