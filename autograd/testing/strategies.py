"""Hypothesis strategies for testing ops: shapes, broadcastable shape pairs, matmul shapes, axes,
arrays kept away from kinks, arrays with distinct values, and non-contiguous views.

    from hypothesis import given
    from autograd.testing import strategies as ags

    @given(ags.arrays(ags.shapes()))
    def test_my_op(x):
        gradcheck(my_op, x)

Arrays are float64 (finite differences need it). Needs the `test` extra (hypothesis).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Array shapes, including 0-d and size-1 axes by default."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4):
    """A tuple of `num_shapes` shapes that broadcast together (new leading axes, size-1 axes)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, max_side=max_side
    ).map(lambda r: r.input_shapes)


@st.composite
def matmul_shapes(draw, max_batch_dims=2, max_side=4):
    """Shapes (a, b) valid for a @ b: 1-D vectors, matrices, and batches that broadcast."""
    n, k, m = (draw(st.integers(1, max_side)) for _ in range(3))
    kind_a, kind_b = draw(st.sampled_from(["vector", "matrix"])), draw(
        st.sampled_from(["vector", "matrix"]))
    batch_a, batch_b = draw(broadcastable_shapes(2, 0, max_batch_dims, 3))
    a = (k,) if kind_a == "vector" else (*batch_a, n, k)
    b = (k,) if kind_b == "vector" else (*batch_b, k, m)
    return a, b


@st.composite
def axes(draw, ndim, allow_none=True, allow_tuple=True):
    """An `axis` argument for a tensor with `ndim` dimensions: None, an int (maybe negative),
    or a tuple of distinct ints."""
    options = []
    if allow_none:
        options.append(st.none())
    if ndim > 0:
        options.append(st.integers(-ndim, ndim - 1))
        if allow_tuple:
            options.append(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                                    unique=True).map(tuple))
    return draw(st.one_of(*options)) if options else None


@st.composite
def arrays(draw, shape, low=-2.0, high=2.0, kinks=(), margin=0.05, dtype=np.float64):
    """Float arrays in [low, high] kept at least `margin` away from each value in `kinks`
    (for example 0 for relu and abs), where finite differences would straddle a kink."""
    if not isinstance(shape, tuple):
        shape = draw(shape)
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)
    if kinks:
        elements = elements.filter(lambda v: all(abs(v - k) >= margin for k in kinks))
    return draw(hnp.arrays(dtype, shape, elements=elements))


def positive_arrays(shape, low=0.2, high=3.0):
    """Arrays bounded away from zero (for log, sqrt, division)."""
    return arrays(shape, low=low, high=high)


@st.composite
def distinct_arrays(draw, shape, gap=0.1):
    """Arrays whose values differ pairwise by at least `gap` (max/min without ties), shuffled."""
    if not isinstance(shape, tuple):
        shape = draw(shape)
    size = int(np.prod(shape, dtype=np.int64))
    order = draw(st.permutations(range(size)))
    offset = draw(st.floats(-1.0, 1.0))
    values = np.asarray(order, dtype=np.float64) * gap + offset
    return values.reshape(shape)


@st.composite
def views(draw, array):
    """The same values as `array`, maybe laid out non-contiguously: a strided slice of a larger
    buffer, or a transposed (Fortran-ordered) copy. Ops must not assume C-contiguous input."""
    kind = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    if kind == "strided" and array.ndim > 0:
        buffer = np.zeros((*array.shape[:-1], 2 * array.shape[-1]), dtype=array.dtype)
        buffer[..., ::2] = array
        return buffer[..., ::2]
    if kind == "transposed" and array.ndim > 1:
        return np.asfortranarray(array)
    return array.copy()


@st.composite
def token_ids(draw, shape, vocab_size, repeats=True):
    """Integer ids in [0, vocab_size), with repeated ids likely (to exercise scatter-add)."""
    if not isinstance(shape, tuple):
        shape = draw(shape)
    high = min(vocab_size - 1, 2) if repeats and draw(st.booleans()) else vocab_size - 1
    return draw(hnp.arrays(np.int64, shape, elements=st.integers(0, high)))
