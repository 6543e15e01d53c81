"""Tests for autograd.debug: graph pictures, stepping through backward, the tape, hooks, anomaly
detection and explain."""

import re
import sys

import numpy as np
import pytest

import autograd as ag
from autograd import function
from autograd.debug import (
    AnomalyError,
    GraphvizNotFound,
    backward_steps,
    detect_anomaly,
    explain,
    op_hooks,
    print_grad,
    print_ops,
    render,
    retain_grads,
    tape,
    time_ops,
    to_dot,
)
from autograd.debug import graph as graph_module


def t64(value, name=None, requires_grad=True):
    return ag.tensor(np.asarray(value, dtype=np.float64), requires_grad=requires_grad, name=name)


def neuron():
    """L = (tanh(w*x + b) - 0.5)^2 + 0.1 w^2: scalars, a chain, a constant, w used 3 times."""
    x, w, b = t64(2.0, "x"), t64(-0.5, "w"), t64(0.3, "b")
    z = w * x + b
    z.name = "z"
    y = z.tanh()
    loss = (y - 0.5) ** 2 + 0.1 * w * w
    loss.name = "loss"
    return loss, (x, w, b)


def diamond():
    """a feeds two branches that meet again: its gradient is the sum of both paths."""
    a = t64([1.0, 2.0, 3.0], "a")
    left, right = a.exp(), a * a
    return (left * right).sum(), (a,)


def broadcast_graph():
    x = t64(np.arange(6.0).reshape(2, 3) / 6, "x")
    bias = t64([0.1, -0.2, 0.3], "bias")
    scale = t64([[2.0], [-1.0]], "scale")
    return ((x + bias) * scale).mean(axis=1, keepdims=True).sum(), (x, bias, scale)


def mlp():
    rng = np.random.default_rng(0)
    x = t64(rng.standard_normal((4, 3)), "x", requires_grad=False)
    w1, b1 = t64(rng.standard_normal((3, 5)), "w1"), t64(np.zeros(5), "b1")
    w2 = t64(rng.standard_normal((5, 2)), "w2")
    h = (x @ w1 + b1).tanh()
    return (h @ w2).logsumexp(axis=-1).mean(), (w1, b1, w2)


GRAPHS = [neuron, diamond, broadcast_graph, mlp]


# ---- to_dot / render ---------------------------------------------------------------------------
def test_to_dot_has_value_and_op_nodes_and_labelled_edges():
    loss, _ = neuron()
    dot = to_dot(loss)
    assert dot.startswith("digraph autograd {") and dot.rstrip().endswith("}")
    for op in ("mul", "add", "tanh", "sub", "powscalar\\nexponent=2"):
        assert f'label="{op}' in dot
    assert re.search(r'label="x\\nscalar float64\\ndata 2"', dot)
    assert re.search(r'label="constant\\nscalar float64\\ndata 0.5"', dot)
    # w*x: edges into the op are labelled with the op's argument names, a and b
    ids = dict(re.findall(r'(v\d+) \[label="(\w+)\\n', dot))
    by_name = {name: vid for vid, name in ids.items()}
    assert re.search(rf"{by_name['w']} -> op\d+ \[label=\"a\"\]", dot)
    assert re.search(rf"{by_name['x']} -> op\d+ \[label=\"b\"\]", dot)
    assert "penwidth=2" in dot  # the output stands out
    n_ops = len(re.findall(r"^  op\d+ \[label=", dot, re.M))
    assert n_ops == 8
    assert len(re.findall(r"op\d+ -> v\d+;", dot)) == n_ops


def test_to_dot_shows_axis_keepdims_and_grads_when_asked():
    x = t64(np.ones((2, 3)), "x")
    y = x.sum(axis=1, keepdims=True)
    y.retain_grad()
    out = y.mean()
    out.backward(retain_graph=True)
    dot = to_dot(out)
    assert 'label="sum\\naxis=1, keepdims=True"' in dot
    assert "grad [[0.5], [0.5]]" in dot  # y.grad, kept by retain_grad
    assert "grad [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]" in dot
    assert "\\ngrad " not in to_dot(out, show=("name", "shape"))
    assert "\\ndata " not in to_dot(out, show=("name",))
    with pytest.raises(ValueError, match="unknown show"):
        to_dot(out, show=("colour",))


def test_to_dot_large_tensors_show_shape_only_and_text_is_deterministic():
    def build():
        a = t64(np.ones((10, 10)), "a")
        return (a @ a).relu().sum()

    dot = to_dot(build())
    assert "(10, 10) float64" in dot and "data [[" not in dot
    assert dot == to_dot(build())


def test_to_dot_after_backward_marks_freed_ops():
    loss, _ = diamond()
    loss.backward()
    assert "freed by backward" in to_dot(loss)


def test_render_writes_a_file_or_explains_how_to_get_graphviz(tmp_path, monkeypatch):
    loss, _ = neuron()
    monkeypatch.setitem(sys.modules, "graphviz", None)  # `import graphviz` fails
    monkeypatch.setattr(graph_module, "_find_dot", lambda: None)
    with pytest.raises(GraphvizNotFound) as err:
        render(loss, tmp_path / "g.svg")
    message = str(err.value)
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert "to_dot" in message


def test_render_with_dot(tmp_path):
    if graph_module._find_dot() is None:
        pytest.skip("Graphviz's dot program is not installed")
    loss, _ = neuron()
    path = render(loss, tmp_path / "g.svg")
    assert open(path).read().lstrip().startswith(("<?xml", "<svg"))


# ---- backward_steps ----------------------------------------------------------------------------
@pytest.mark.parametrize("build", GRAPHS, ids=lambda f: f.__name__)
def test_backward_steps_gives_the_same_grads_as_backward(build):
    loss, leaves = build()
    loss.backward()
    expected = [leaf.grad.copy() for leaf in leaves]
    loss, leaves = build()
    steps = list(backward_steps(loss))
    assert steps and [s.index for s in steps] == list(range(1, len(steps) + 1))
    for leaf, grad in zip(leaves, expected):
        np.testing.assert_array_equal(leaf.grad, grad)


@pytest.mark.parametrize("build", GRAPHS, ids=lambda f: f.__name__)
def test_backward_steps_order_is_deterministic(build):
    runs = [[str(s) for s in backward_steps(build()[0])] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_backward_step_contents_and_str():
    loss, (x, w, b) = neuron()
    steps = list(backward_steps(loss))
    first = steps[0]
    assert first.name == "add" and first.output is loss
    assert first.grad_output == 1.0
    # the step that made z = w*x: its inputs, its incoming gradient and what it sent back
    (mul,) = [s for s in steps if s.name == "mul" and s.inputs == (w, x)]
    assert mul.rule == "mul: d(a*b)/da = b, d(a*b)/db = a"
    np.testing.assert_allclose(mul.grad_inputs[0], mul.grad_output * x.data)
    np.testing.assert_allclose(mul.grad_inputs[1], mul.grad_output * w.data)
    line = str(mul)
    assert line.startswith(f"[{mul.index}] mul_0 = mul(a=w, b=x) | grad mul_0 = ")
    assert "grad w += " in line and "grad x += " in line and "d(a*b)/da = b" in line
    assert "\n" not in line and len(line) < 160
    assert "input a    w scalar -0.5" in mul.details()
    # constants get no gradient, and the step says so by leaving them out
    (sub,) = [s for s in steps if s.name == "sub"]
    assert sub.grad_inputs[1] is None and "grad 0.5" not in str(sub)


def test_backward_steps_diamond_accumulates_both_paths():
    loss, (a,) = diamond()
    steps = list(backward_steps(loss))
    sent_to_a = [g for s in steps for t, g in zip(s.inputs, s.grad_inputs) if t is a]
    assert len(sent_to_a) == 3  # exp(a), and a*a sends two contributions
    np.testing.assert_allclose(sum(sent_to_a), a.grad)
    np.testing.assert_allclose(a.grad, np.exp(a.data) * a.data**2 + 2 * a.data * np.exp(a.data))


def test_backward_steps_with_an_upstream_grad_and_a_leaf_root():
    x = t64([1.0, 2.0], "x")
    y = x * 3
    steps = list(backward_steps(y, grad=np.array([1.0, -1.0])))
    assert len(steps) == 1
    np.testing.assert_array_equal(x.grad, [3.0, -3.0])
    assert list(backward_steps(t64(1.0))) == []


# ---- tape ------------------------------------------------------------------------------------
def test_tape_records_ops_in_order_and_prints_one_line_each():
    x = t64(np.ones((2, 3)), "x")
    w = t64(np.ones((3, 2)), "w")
    with tape() as t:
        h = x @ w
        h.name = "h"
        out = h.relu().sum(axis=0).mean()
        with ag.no_grad():
            x * 2
    assert t.ops() == ["matmul", "relu", "sum", "mean", "mul"]
    lines = str(t).splitlines()
    assert len(lines) == 5
    assert re.match(r"1\s+h = matmul\(a=x, b=w\)\s+\(2, 2\) float64$", lines[0])
    assert "relu_0 = relu(h)" in lines[1]
    assert "sum_0 = sum(relu_0, axis=0, keepdims=False)" in lines[2]
    assert lines[3].endswith("scalar float64") and "(no grad)" in lines[4]
    assert t[3].output is out and t[0].inputs == (x, w)
    assert function.forward_hooks == []  # the tape removed its hook


# ---- hooks -----------------------------------------------------------------------------------
def test_tensor_hook_sees_and_replaces_a_gradient():
    x = t64([1.0, 2.0], "x")
    y = x * x
    seen = []
    y.register_hook(lambda g: seen.append(g.copy()))
    y.register_hook(lambda g: g * 10)  # replaces what flows on to x
    y.sum().backward()
    np.testing.assert_array_equal(seen[0], [1.0, 1.0])
    np.testing.assert_array_equal(x.grad, 10 * 2 * x.data)


def test_hook_handle_remove_and_retain_grad():
    x = t64([1.0, 2.0], "x")
    y = x * 3
    handle = y.register_hook(lambda g: g * 0)
    handle.remove()
    y.retain_grad()
    y.sum().backward()
    np.testing.assert_array_equal(y.grad, [1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_retain_grads_keeps_every_intermediate():
    loss, _ = neuron()
    kept = retain_grads(loss)
    loss.backward()
    assert len(kept) == 8 and all(t.grad is not None for t in kept)
    z = [t for t in kept if t.name == "z"][0]
    assert z.grad.shape == () and loss.grad == 1.0


def test_print_grad_hook(capsys):
    x = t64([1.0, 2.0], "x")
    y = x * 3
    y.register_hook(print_grad("y"))
    y.sum().backward()
    assert capsys.readouterr().out.strip() == "y: (2,) [1, 1]"


def test_op_hooks_see_every_forward_and_backward():
    forward, backward = [], []
    loss, _ = neuron()  # built outside: not seen
    with op_hooks(forward=lambda op, ctx, ins, out: forward.append(op.name),
                  backward=lambda op, ctx, g, igs: backward.append(op.name)):
        loss, _ = neuron()
        loss.backward()
    assert forward == ["mul", "add", "tanh", "sub", "powscalar", "mul", "mul", "add"]
    assert sorted(backward) == sorted(forward)
    assert function.forward_hooks == [] and function.backward_hooks == []


def test_print_ops_and_time_ops(capsys):
    with print_ops():
        loss, _ = diamond()
        loss.backward()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("forward  exp_0 = exp(a)")
    assert sum(line.startswith("forward") for line in out) == 4
    assert sum(line.startswith("backward") for line in out) == 4
    assert any(line.startswith("backward mul_0: grad in") and "a: (3,)" in line for line in out)
    with time_ops() as timer:
        loss, _ = diamond()
        loss.backward()
    rows = timer.rows()
    assert {(phase, op) for phase, op, _, _ in rows} >= {("forward", "exp"), ("backward", "sum")}
    assert all(s >= 0 for *_, s in rows) and "calls" in str(timer)


# ---- detect_anomaly ----------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_log_of_negative_names_op_and_line():
    x = t64([1.0, -1.0], "x")
    with pytest.raises(AnomalyError) as err, detect_anomaly():
        x.log()  # THIS LINE
    e = err.value
    assert (e.op, e.phase, e.kind) == ("log", "forward", "nan")
    assert "log produced nan" in str(e) and "test_debug.py" in str(e) and "THIS LINE" in str(e)
    assert e.created_at.name == "test_detect_anomaly_log_of_negative_names_op_and_line"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_zero_times_inf():
    zero, inf = t64(0.0, "zero"), t64(np.inf, "inf", requires_grad=False)
    with pytest.raises(AnomalyError, match="mul produced nan"), detect_anomaly():
        zero * inf


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_in_backward_sqrt_at_zero():
    x = t64([0.0, 4.0], "x")
    with pytest.raises(AnomalyError) as err, detect_anomaly():
        y = x.sqrt()  # CREATED HERE
        y.sum().backward()
    e = err.value
    assert (e.op, e.phase, e.kind) == ("sqrt", "backward", "inf")
    assert "backward of sqrt" in str(e) and "CREATED HERE" in str(e)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_backward_of_a_graph_built_outside():
    x = t64([0.0], "x")
    y = x.sqrt().sum()
    with pytest.raises(AnomalyError, match="outside detect_anomaly"), detect_anomaly():
        y.backward()


def test_detect_anomaly_is_quiet_otherwise_and_cleans_up():
    with detect_anomaly():
        for build in GRAPHS:
            loss, _ = build()
            loss.backward()
        # a deliberate -inf (an attention mask) that exp turns into 0 is not an anomaly
        s = t64([[1.0, 2.0], [3.0, 4.0]], "s")
        masked = ag.where(np.array([[True, False], [True, True]]), s, -np.inf)
        (masked - masked.max(axis=-1, keepdims=True)).exp().sum().backward()
        with detect_anomaly():  # nesting is allowed
            pass
        assert function.forward_hooks  # still on after the inner block
    assert function.forward_hooks == [] and function.backward_hooks == []
    assert np.isfinite(s.grad).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_as_a_decorator():
    @detect_anomaly()
    def bad(x):
        return x / 0.0

    with pytest.raises(AnomalyError, match="div produced inf"):
        bad(t64([1.0], "x"))


# ---- explain -----------------------------------------------------------------------------------
def test_explain_prints_formula_and_vjp(capsys):
    from autograd.ops.elementwise import Mul

    x = t64(2.0, "x")
    for op in ("mul", Mul, (x * x).grad_fn, x * x):
        explain(op)
        out = capsys.readouterr().out
        assert "forward  out = a * b." in out
        assert "VJP      da = g * b, db = g * a." in out
        assert "rule     mul: d(a*b)/da = b" in out
    explain("softmax", source=True)
    out = capsys.readouterr().out
    assert "def backward(ctx, g):" in out and "VJP" in out


def test_explain_unknown_name_suggests():
    with pytest.raises(ValueError, match="did you mean 'tanh'"):
        explain("tahn")
    with pytest.raises(ValueError, match="leaf"):
        explain(t64(1.0))
