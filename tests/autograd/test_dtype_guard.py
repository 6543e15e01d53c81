"""autograd.debug.check_dtypes: the first op whose output silently changes the float dtype is
caught (named, with dtypes and the caller's line); real models in float32 and float64 pass
through it without a word."""

import contextlib
import itertools
import sys

import numpy as np
import pytest

import autograd as ag
from autograd import Function, function
from autograd.debug import DtypeError, check_dtypes
from tinyllm import GPT, GPTConfig


class Upcast(Function):
    """A buggy op: multiplies by a float64 array (the classic silent upcast)."""

    @staticmethod
    def forward(ctx, a):
        return a * np.full(a.shape[-1:], 2.0)  # np.full defaults to float64

    @staticmethod
    def backward(ctx, g):
        return (g * 2.0).astype(np.float32)


class Downcast(Function):
    """A buggy op that computes in float32 whatever its input."""

    @staticmethod
    def forward(ctx, a):
        return a.astype(np.float32)

    @staticmethod
    def backward(ctx, g):
        return g.astype(np.float64)


def f32(shape=(4, 8), requires_grad=True):
    return ag.tensor(np.ones(shape, dtype=np.float32), requires_grad=requires_grad)


def test_catches_an_op_that_upcasts_and_says_where():
    x = f32()
    with check_dtypes(), pytest.raises(DtypeError) as info:
        Upcast.apply(x)  # the reported line
    line = sys._getframe().f_lineno - 1
    err = info.value
    assert err.op == "upcast"
    assert err.input_dtypes == ["float32"] and err.output_dtype == "float64"
    text = str(err)
    assert "upcast turned float32 inputs into a float64 output" in text
    assert "a float32 (4, 8)" in text
    assert f"test_dtype_guard.py:{line}" in text and "Upcast.apply(x)" in text
    assert err.called_at.lineno == line


def test_catches_a_downcast_too():
    x = ag.tensor(np.ones(3), requires_grad=True)
    with check_dtypes(), pytest.raises(DtypeError, match="float64 inputs into a float32 output"):
        Downcast.apply(x)


def test_mixed_float_inputs_are_refused_by_every_op_guard_or_not():
    """Issue 11, item 18: ops never promote; the message names the op, the inputs and dtypes
    (before, linear's backward was blamed for the float64 gradient of a float32 weight)."""
    a, b = f32(), ag.tensor(np.ones(8), requires_grad=True)  # float64 bias
    for guard in (check_dtypes(), contextlib.nullcontext()):
        with guard, pytest.raises(TypeError, match=r"add: inputs of different float dtypes "
                                  r"\(a float32 \(4, 8\), b float64 \(8,\)\)"):
            a + b
    lin = ag.nn.Linear(2, 2)  # float32 weights
    with pytest.raises(TypeError, match=r"linear: .*x float64 \(3, 2\), w float32 \(2, 2\)"):
        lin(ag.tensor(np.random.default_rng(0).standard_normal((3, 2))))
    assert (a + b.astype(np.float32)).dtype == np.float32  # an explicit cast is the way


def test_only_the_first_bad_op_is_reported_and_nothing_is_left_installed():
    before = list(function.forward_hooks)
    x = f32()
    with pytest.raises(DtypeError, match="upcast"):
        with check_dtypes():
            y = Upcast.apply(x)  # raises here: the later op never runs
            y.exp()
    assert function.forward_hooks == before
    Upcast.apply(x)  # outside the block: not checked


def test_quiet_outside_and_for_casts_ints_and_allowed_ops():
    x = f32()
    with check_dtypes():
        y = x.astype(np.float64) * 2.0  # Cast changes the dtype on purpose; mul stays float64
        assert y.dtype == np.float64
        table = f32((5, 8))
        e = ag.functional.embedding(np.array([[0, 4, 4]]), table)  # int ids next to float32
        assert e.dtype == np.float32
        ag.functional.cross_entropy(e, np.array([[1, 2, -100]])).backward()
    with check_dtypes(allow=[Upcast]):
        Upcast.apply(x)
    with check_dtypes(allow=["upcast"]):
        Upcast.apply(x)


def test_works_as_a_decorator_bare_and_with_arguments():
    @check_dtypes
    def bare(t):
        return Upcast.apply(t)

    @check_dtypes(allow=["add"])
    def configured(t):
        return Upcast.apply(t)

    for fn in (bare, configured):
        with pytest.raises(DtypeError):
            fn(f32())
    assert bare.__name__ == "bare"

    @check_dtypes()
    def fine(t):
        return (t * 2.0).sum()

    assert fine(f32()).dtype == np.float32


def test_nested_blocks():
    x = f32()
    with check_dtypes():
        with check_dtypes(allow=["upcast"]):
            with pytest.raises(DtypeError):  # the outer block still checks
                Upcast.apply(x)
        with pytest.raises(DtypeError):
            Upcast.apply(x)


OPTIONS = list(itertools.product(["learned", "rope"], ["gelu", "swiglu"], ["layernorm", "rmsnorm"]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pos,mlp,norm", OPTIONS)
def test_quiet_on_a_gpt_training_step(dtype, pos, mlp, norm):
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, dropout=0.1,
                       pos=pos, mlp=mlp, norm=norm, dtype=dtype)
    model = GPT(config, seed=0)
    opt = ag.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8))
    targets[0, 0] = -100
    with check_dtypes():
        logits, loss = model(idx, targets)
        loss = loss * 0.5 + 0.0  # Python scalars keep the dtype
        loss.backward()
        ag.optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        model.generate(idx[:1, :3], max_new_tokens=6, temperature=0.8, top_k=5, seed=0)
    assert logits.dtype == np.dtype(dtype) and loss.dtype == np.dtype(dtype)
    assert all(p.dtype == np.dtype(dtype) for p in model.parameters())
