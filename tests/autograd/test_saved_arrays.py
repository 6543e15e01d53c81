"""Saved arrays must not change between forward and backward (issue 11, item 17).

Two guards: on NumPy a saved array is read-only while a node holds it, so a raw write fails at
once; and every tensor has a version counter, raised by optimizer steps and state-dict loads,
which the engine compares before running a node's backward (this one also works on CuPy)."""

import gc

import numpy as np
import pytest

import autograd as ag
from autograd import nn, optim
from autograd.function import modifying


def test_a_raw_write_into_a_saved_array_fails_at_the_write():
    w = ag.tensor(np.array([1.0, 2.0]), requires_grad=True, name="w")
    x = ag.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (w * x).sum()
    with pytest.raises(ValueError, match="read-only"):
        w.data[...] = 100
    y.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])  # not [100, 100]
    w.data[...] = 100  # the graph is released: the array is the user's again
    assert w.data.flags.writeable


def test_a_dropped_graph_gives_the_array_back():
    w = ag.tensor(np.ones(3), requires_grad=True)
    y = (w * w).sum()
    assert not w.data.flags.writeable
    del y
    gc.collect()
    w.data[0] = 5.0


def test_two_graphs_saving_one_array_both_hold_it():
    w = ag.tensor(np.ones(3), requires_grad=True)
    a, b = (w * w).sum(), (w * 3.0).sum()
    a.backward()
    assert not w.data.flags.writeable, "the second graph still needs w"
    b.backward()
    assert w.data.flags.writeable


def test_an_array_read_only_before_stays_read_only():
    frozen = np.ones(3)
    frozen.flags.writeable = False
    w = ag.tensor(frozen, requires_grad=True, copy=False)
    (w * w).sum().backward()
    assert not frozen.flags.writeable


def test_optimizer_step_between_forward_and_backward_is_refused_naming_op_and_tensor():
    lin = nn.Linear(2, 2, dtype=np.float64)
    lin.weight.name = "weight"
    opt = optim.SGD(lin.parameters(), lr=0.1)
    x = ag.tensor(np.ones((3, 2)))
    first, second = lin(x).sum(), lin(x).sum()
    first.backward()
    opt.step()  # writes the weight in place although `second` still saved it
    with pytest.raises(RuntimeError, match=r"linear: input 1 \('weight', a leaf.*version 1"):
        second.backward()


def test_changing_a_linear_weight_between_forward_and_backward_is_refused():
    lin = nn.Linear(2, 2, dtype=np.float64)
    y = lin(ag.tensor(np.ones((3, 2)))).sum()
    with pytest.raises(ValueError, match="read-only"):
        lin.weight.data[...] = 0.0
    lin.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.zeros(2)})
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_a_saved_output_changed_through_modifying_is_named():
    x = ag.tensor(np.ones(3), requires_grad=True)
    y = x.exp()  # exp saves its own output
    z = y.sum()  # sum saves nothing: only exp's saved output is at stake
    with modifying(y) as data:
        data[...] = 0.0
    with pytest.raises(RuntimeError, match="exp: its output"):
        z.backward()


def test_an_op_that_saves_nothing_does_not_mind():
    w = ag.tensor(np.ones(3), requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    y = (w + 1.0).sum()  # add saves nothing: its gradient does not depend on w
    w.grad = np.ones(3)
    opt.step()
    y.backward()
    np.testing.assert_array_equal(w.grad, np.ones(3) + 1.0)


def test_a_normal_training_loop_is_unaffected():
    lin = nn.Linear(3, 1, dtype=np.float64)
    opt = optim.AdamW(lin.parameters(), lr=0.1)
    x = ag.tensor(np.random.default_rng(0).standard_normal((8, 3)))
    for _ in range(3):
        opt.zero_grad()
        (lin(x) ** 2).mean().backward()
        opt.step()
    assert lin.weight._version == 3
    assert lin.weight.data.flags.writeable


def test_tensor_copies_the_callers_array_unless_asked_not_to():
    arr = np.ones(3)
    w = ag.tensor(arr, requires_grad=True)
    opt = optim.SGD([w], lr=0.5)
    w.grad = np.ones(3)
    opt.step()
    np.testing.assert_array_equal(arr, np.ones(3))  # the caller's array is untouched
    shared = ag.tensor(arr, copy=False)
    assert shared.data is arr
    view = arr[:2]
    assert not np.shares_memory(ag.tensor(view).data, arr)


def test_a_float64_memmap_stays_float64_and_is_copied(tmp_path):
    mm = np.memmap(tmp_path / "x.bin", dtype=np.float64, mode="w+", shape=(4,))
    mm[:] = [1.0, 2.0, 3.0, 4.0]
    t = ag.tensor(mm)
    assert t.dtype == np.float64 and type(t.data) is np.ndarray
    assert not np.shares_memory(t.data, mm)
    assert ag.tensor(mm, copy=False).dtype == np.float64


def test_a_weight_saved_through_a_view_is_guarded_too():
    """GPT's tied head computes x @ wte.weight.T: the op saves a view of the weight."""
    w = ag.tensor(np.ones((3, 2)), requires_grad=True, name="w")
    opt = optim.SGD([w], lr=0.1)
    x = ag.tensor(np.ones((4, 2)))
    first, second = (x @ w.T).sum(), (x @ w.T).sum()
    with pytest.raises(ValueError, match="read-only"):
        w.data[...] = 0.0
    first.backward()
    opt.step()
    with pytest.raises(RuntimeError, match=r"matmul: input 1 \(the output of 'transpose'.*shares "
                                           "memory with a tensor that was modified"):
        second.backward()
    del first, second
    gc.collect()
    assert w.data.flags.writeable
