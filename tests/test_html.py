"""autograd.debug.to_html without a browser: what the page records, and that it is self-contained.
(tests/test_html_browser.py drives the page itself in headless Chromium.)"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from autograd import Tensor
from autograd.debug import backward_steps, to_html
from autograd.debug.html import record_backward


def _graph(seed=0):
    """A small graph in float64 where `h` is used twice (so its gradient is a sum)."""
    rng = np.random.default_rng(seed)
    w = Tensor(rng.normal(size=(2, 3)), requires_grad=True, name="w")
    x = Tensor(rng.normal(size=(3,)), name="x")
    b = Tensor(rng.normal(size=(2,)), requires_grad=True, name="b")
    h = (w @ x + b).tanh()
    h.name = "h"
    loss = (h * h + h * Tensor(rng.normal(size=(2,)))).sum()
    return loss, (w, b)


def _array(packed):
    return np.array([float(v) for v in packed["values"]]).reshape(packed["shape"])


def _page_record(path):
    text = open(path, encoding="utf-8").read()
    return text, json.loads(re.search(r'id="record">(.*?)</script>', text, re.S).group(1))


def test_record_replays_the_engine_backward_exactly():
    loss, (w, b) = _graph()
    expected = [(s.name, s.grad_output.copy()) for s in backward_steps(_graph()[0])]
    rec = record_backward(loss)
    ops = {o["id"]: o for o in rec["ops"]}
    assert [ops[s["op"]]["name"] for s in rec["steps"]] == [name for name, _ in expected]
    for step, (_, g) in zip(rec["steps"], expected):
        np.testing.assert_array_equal(_array(step["grad_out"]), g)
    labels = {v["label"]: v for v in rec["values"]}
    for leaf in (w, b):
        v = labels[leaf.name]
        final = _array(v["final_grad"])
        np.testing.assert_array_equal(final, leaf.grad)  # exactly the engine's .grad
        # the last running sum shown at this leaf is the same array, bit for bit
        last = [s for st in rec["steps"] for s in st["sends"] if s["input"] == v["id"]][-1]
        np.testing.assert_array_equal(_array(last["after"]), leaf.grad)
    # h is used by two ops: its second contribution shows "before + contribution"
    h_sends = [s for st in rec["steps"] for s in st["sends"] if s["input"] == labels["h"]["id"]]
    assert len(h_sends) == 3 and h_sends[0]["before"] is None and h_sends[1]["before"] is not None
    np.testing.assert_allclose(_array(h_sends[-1]["after"]),
                               sum(_array(s["grad"]) for s in h_sends), rtol=1e-12)


def test_layout_puts_inputs_left_and_the_loss_right():
    rec = record_backward(_graph()[0])
    cols = {v["label"]: v["col"] for v in rec["values"]}
    assert cols["w"] == 0 and cols["w"] < cols["h"] < cols[rec["values"][-1]["label"]]
    assert max(o["col"] for o in rec["ops"]) < rec["values"][-1]["col"]
    for o in rec["ops"]:
        assert all(rec["values"][i]["col"] < o["col"] for i in o["inputs"])
        assert rec["values"][o["output"]]["col"] == o["col"] + 1
    places = [(n["col"], n["row"]) for n in rec["values"] + rec["ops"]]
    assert len(set(places)) == len(places)  # no two nodes on top of each other


def test_check_view_finite_differences_match_the_gradient():
    loss, (w, b) = _graph(1)
    rec = record_backward(loss)
    leaves = {leaf["label"]: leaf for leaf in rec["check"]["leaves"]}
    assert set(leaves) == {"w", "b"}
    for t in (w, b):
        entries = leaves[t.name]["entries"]
        assert len(entries) == t.size
        for e in entries:
            assert e["grad"] == t.grad[tuple(e["index"])]
            assert e["fd"] == pytest.approx(e["grad"], rel=1e-6, abs=1e-9)


def test_each_op_carries_its_formula_vjp_and_rule():
    rec = record_backward(_graph()[0])
    tanh = next(o for o in rec["ops"] if o["name"] == "tanh")
    assert "tanh" in tanh["forward"] and tanh["vjp"] and "tanh" in tanh["rule"]
    matmul = next(o for o in rec["ops"] if o["name"] == "matmul")
    assert matmul["call"].startswith("matmul_0 = matmul(") and "w" in matmul["call"]


def test_large_arrays_are_summarised_and_a_random_upstream_gradient_works(tmp_path):
    rng = np.random.default_rng(2)
    a = Tensor(rng.normal(size=(20, 30)), requires_grad=True, name="a")
    out = (a * a).sum(axis=1)
    upstream = rng.normal(size=(20,))
    rec = record_backward(out, grad=upstream)
    value = rec["values"][0]["value"]
    assert "values" not in value and value["stats"]["absmax"] == pytest.approx(np.abs(a.data).max())
    np.testing.assert_array_equal(a.grad, 2 * a.data * upstream[:, None])
    entries = rec["check"]["leaves"][0]["entries"]
    assert 1 < len(entries) < a.size and rec["check"]["leaves"][0]["skipped"]
    for e in entries:
        assert e["fd"] == pytest.approx(e["grad"], rel=1e-6, abs=1e-9)


def test_page_is_self_contained(tmp_path):
    loss, _ = _graph()
    loss.name = "</script><script>alert(1)</script>"
    path = to_html(loss, tmp_path / "page.html")
    text, rec = _page_record(path)
    assert rec["values"][-1]["label"] == loss.name  # survived the trip through the page intact
    assert text.count("</script>") == 2  # the data block cannot close early
    assert "default-src 'none'" in text  # the browser refuses every request
    assert not re.search(r"\b(src|href)\s*=", text)
    assert re.findall(r"https?://[^\s\"']+", text) == ["http://www.w3.org/2000/svg"] * 2  # a name


def test_refuses_a_leaf_and_a_freed_graph(tmp_path):
    loss, _ = _graph()
    with pytest.raises(ValueError, match="leaf"):
        to_html(Tensor(np.ones(2), requires_grad=True), tmp_path / "x.html")
    loss.backward()
    with pytest.raises(ValueError, match="already freed"):
        to_html(loss, tmp_path / "x.html")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_command_line_writes_the_page_and_reports_a_missing_loss(tmp_path):
    script = tmp_path / "expr.py"
    script.write_text("import numpy as np\nfrom autograd import Tensor\n"
                      "a = Tensor(np.array([1.0, -2.0]), requires_grad=True, name='a')\n"
                      "loss = (a * a).sum()\n")
    run = [sys.executable, "-m", "autograd.debug.html"]
    done = subprocess.run(run + [str(script), "-o", str(tmp_path / "p.html")],
                          capture_output=True, text=True, cwd=tmp_path.parent.parent,
                          env=_env())
    assert done.returncode == 0, done.stderr
    _, rec = _page_record(tmp_path / "p.html")
    assert _array(rec["values"][0]["final_grad"]).tolist() == [2.0, -4.0]
    bad = subprocess.run(run + [str(script), "--name", "nothing"], capture_output=True, text=True,
                         env=_env())
    assert bad.returncode == 2 and "no tensor named 'nothing'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def _env():
    import os
    import pathlib
    root = str(pathlib.Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
