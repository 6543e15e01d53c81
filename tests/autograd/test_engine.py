"""The engine: accumulation, order, graph lifetime, grad modes, hooks, devices, errors."""

import gc
import weakref

import numpy as np
import pytest

import autograd as ag
from autograd import Function
from autograd.engine import topological_order
from autograd.testing import gradcheck

rng = np.random.default_rng(0)


def leaf(*shape):
    return ag.tensor(rng.standard_normal(shape), requires_grad=True)


def test_diamond_accumulates_both_paths():
    x = leaf(3)
    a, b = x * 2.0, x.exp()
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(x.data) + 2 * x.data * np.exp(x.data))


def test_same_tensor_used_twice_in_one_op():
    x = leaf(4)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)


def test_deep_chain_of_100k_ops():
    x = ag.tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad[0] == 1.0
    del y
    gc.collect()


def test_order_is_deterministic_and_topological():
    def build():
        x = leaf(2)
        parts = [x * float(i) for i in range(5)]
        total = parts[0]
        for p in parts[1:]:
            total = total + p.tanh()
        return total.sum()

    orders = []
    for _ in range(2):
        out = build()
        orders.append([t.grad_fn.name if t.grad_fn else "leaf" for t in topological_order(out)])
        position = {id(t): i for i, t in enumerate(topological_order(out))}
        for t in topological_order(out):
            if t._node is not None:
                assert all(position[id(p)] < position[id(t)] for p in t._node.inputs
                           if p.requires_grad)
    assert orders[0] == orders[1]


def test_graph_is_freed_after_backward():
    x = leaf(100)
    y = x.exp()
    ctx = weakref.ref(y._node.ctx)
    saved = weakref.ref(y._node.ctx.saved[0])  # exp saves its output array (y's data)
    z = (y * 2).sum()
    nodes = [z._node, z._node.inputs[0]._node]
    del y
    z.backward()  # z still holds its node: only release() can let go of what it saved
    assert all(n.released and n.ctx is None for n in nodes)
    del nodes
    gc.collect()
    assert ctx() is None and saved() is None, "backward kept the graph's saved arrays alive"
    with pytest.raises(RuntimeError, match="retain_graph"):
        z.backward()


def test_memory_falls_during_the_backward_walk():
    """30 chained tanh on 100k float64: the forward holds 24 MB of saved outputs. The walk must
    free each one once its gradient has moved on, not keep them all to the end."""
    import tracemalloc

    from autograd.engine import iter_backward

    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        y = ag.tensor(rng.standard_normal(100_000), requires_grad=True)
        for _ in range(30):
            y = y.tanh()
        loss = y.sum()
        del y
        held = tracemalloc.get_traced_memory()[0] - start
        during = [tracemalloc.get_traced_memory()[0] - start for _ in iter_backward(loss)]
    finally:
        tracemalloc.stop()
    assert held > 23e6
    assert max(during) < held + 3e6, "the walk allocated far more than one gradient at a time"
    assert during[15] < 0.7 * held, f"half way, {during[15] / 1e6:.1f} MB still held"
    assert during[-1] < 4e6, f"at the end of the walk {during[-1] / 1e6:.1f} MB still held"


def test_retain_graph_allows_a_second_backward_that_accumulates():
    x = leaf(3)
    z = (x * x).sum()
    z.backward(retain_graph=True)
    first = x.grad.copy()
    z.backward()
    np.testing.assert_array_equal(x.grad, 2 * first)


def test_a_training_step_keeps_no_graph_alive():
    w = leaf(4, 4)
    refs = []
    for _ in range(3):
        out = (ag.tensor(rng.standard_normal((2, 4))) @ w).tanh().sum()
        refs.append(weakref.ref(out))
        out.backward()
        del out
    gc.collect()
    assert all(r() is None for r in refs)


def test_no_grad_records_nothing():
    x = leaf(3)
    with ag.no_grad():
        y = x * 2
        assert not ag.is_grad_enabled()
        with ag.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn.name == "mul"
    assert ag.is_grad_enabled()

    @ag.no_grad()
    def f(t):
        return t * 3

    assert f(x).grad_fn is None


def test_tensor_hook_sees_and_replaces_the_gradient():
    x = leaf(3)
    y = x * 2
    seen = []
    y.register_hook(lambda g: seen.append(g.copy()))
    handle = y.register_hook(lambda g: g * 10)
    y.sum().backward()
    np.testing.assert_array_equal(seen[0], np.ones(3))
    np.testing.assert_array_equal(x.grad, 20 * np.ones(3))
    handle.remove()
    x.grad = None
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * np.ones(3))


def test_retain_grad_on_intermediates():
    x = leaf(3)
    y = (x * 3).retain_grad()
    z = x * 4
    (y * z).sum().backward()
    np.testing.assert_allclose(y.grad, z.data)
    assert z.grad is None


def test_leaf_grads_accumulate_until_cleared():
    x = leaf(2)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, 5 * np.ones(2))
    x.zero_grad()
    assert x.grad is None


def test_backward_on_a_non_scalar_needs_a_gradient():
    x = leaf(2, 3)
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\) needs a gradient"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="got shape"):
        (x * 2).backward(np.ones(3))


def test_backward_without_grad_requirement_is_explained():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ag.tensor([1.0, 2.0]).sum().backward()


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        ag.tensor(np.arange(3), requires_grad=True)


def test_matmul_shape_error_says_what_is_wrong():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\) don't line up"):
        leaf(2, 3) @ leaf(4, 5)


def test_a_backward_returning_the_wrong_dtype_is_named():
    class Upcast(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g.astype(np.float64) * 2

    x = ag.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="upcast.backward returned a float64 gradient"):
        Upcast.apply(x).sum().backward()


def test_a_backward_returning_the_wrong_shape_is_named():
    class BadShape(Function):
        @staticmethod
        def forward(ctx, a):
            return a.sum()

        @staticmethod
        def backward(ctx, g):
            return g * np.ones(7)

    with pytest.raises(RuntimeError, match=r"badshape.backward returned a gradient of shape \(7,\)"):
        BadShape.apply(leaf(3)).backward()


def test_mixing_devices_is_a_clear_error(monkeypatch):
    import autograd.function as function

    a, b = leaf(2), leaf(2)
    fake = {id(b.data)}
    monkeypatch.setattr(function, "device_of", lambda x: "cuda" if id(x) in fake else "cpu")
    with pytest.raises(RuntimeError, match="different devices"):
        a + b


def test_float32_stays_float32_through_scalars_and_backward():
    x = ag.tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    y = ((x * 0.5 + 1.0) ** 2 / 3.0 + np.float32(1)).sqrt().sum()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32
    assert ag.tensor([1.0, 2.0]).dtype == np.float32


def test_operators_and_comparisons():
    a, b = leaf(3), leaf(3)
    assert isinstance(a < b, np.ndarray) and (a < b).dtype == bool
    np.testing.assert_allclose((2.0 - a).data, 2 - a.data)
    np.testing.assert_allclose((np.ones(3) + a).data, 1 + a.data)
    np.testing.assert_allclose((-a).data, -a.data)
    np.testing.assert_allclose(a[1:].data, a.data[1:])
    assert a.shape == (3,) and a.ndim == 1 and a.dtype == np.float64 and len(a) == 3
    assert ag.tensor(np.float64(2.5)).item() == 2.5
    assert isinstance(a.numpy(), np.ndarray) and a.detach().grad_fn is None


def test_split_squeeze_unsqueeze_and_swapaxes_are_differentiable():
    x = rng.standard_normal((4, 1, 3))
    gradcheck(lambda t: ag.concatenate(t.split(2, axis=0)[::-1], axis=0), x)
    gradcheck(lambda t: t.squeeze(1).unsqueeze(0).swapaxes(0, 2), x)
    gradcheck(lambda t: ag.concatenate(ag.split(t, [1, 3], axis=2)[::-1], axis=2), x)


def test_a_user_op_in_five_lines():
    """The README's example: a new op as a Function subclass, gradchecked."""
    class Cube(Function):
        """out = a^3;  VJP: da = 3 a^2 g"""
        forward = staticmethod(lambda ctx, a: (ctx.save_for_backward(a), a * a * a)[1])
        backward = staticmethod(lambda ctx, g: 3 * ctx.saved[0] ** 2 * g)

    assert gradcheck(Cube.apply, rng.standard_normal((3, 2)))
    assert Function.registry["tests.autograd.test_engine.test_a_user_op_in_five_lines.<locals>.Cube"]


def test_tensor_repr_and_to_cpu():
    x = leaf(2)
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=mul" in repr(x * 2)
    assert x.to("cpu") is x
    with pytest.raises(ValueError, match="unknown device"):
        x.to("tpu")
