"""The GPU path (CuPy), and checks that catch CuPy-only mistakes on a machine without a GPU.

Every device test runs twice:
  "cuda"  real CuPy on a GPU: marked `gpu`, skipped by conftest.py without CuPy and a GPU;
  "fake"  tests/fake_cupy.py, a strict stand-in for CuPy (NumPy arrays in a wrapper that, like
          CuPy, refuses to be mixed with host arrays or silently converted to them): runs
          everywhere, so a host/device mix-up fails on a laptop, not first on the GPU machine.
Both go through the public API only: ag.tensor(..., device="cuda"), set_default_device("cuda"),
model.to("cuda"), Tensor.to. The comparisons are against the same computation on the CPU.

The static checks at the end list every `np.` use in the parts of the packages that handle
tensor data outside the ops (autograd/ops may not import NumPy at all: tests/test_layering.py)
and insist that each one is on a host-only value, by an allowlist that gives the reason.
"""

from __future__ import annotations

import ast
import contextlib
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autograd as ag
from autograd import nn, optim
from autograd.backend import asnumpy, device_of, to_device
from autograd.ops.shape import ToDevice
from tests import fake_cupy
from tests.autograd.op_specs import SPECS
from tinyllm import GPT, GPTConfig

# The folder holding the packages being tested: the checkout, or site-packages when the tests
# run against an installed wheel (.ci/wheel_check).
ROOT = pathlib.Path(ag.__file__).resolve().parents[1]
DEVICES = ["fake", pytest.param("cuda", marks=pytest.mark.gpu)]


@contextlib.contextmanager
def on_device(kind):
    """Run the block with "cuda" meaning the real GPU, or the strict fake CuPy."""
    with fake_cupy.installed() if kind == "fake" else contextlib.nullcontext():
        try:
            yield
        finally:
            ag.set_default_device("cpu")


@pytest.fixture(params=DEVICES)
def device(request):
    with on_device(request.param):
        yield "cuda"


def host(x):
    """A host copy of an array or tensor (NumPy), for comparisons."""
    return asnumpy(x.data if isinstance(x, ag.Tensor) else x)


def to_cuda(x):
    """Arrays (and NumPy scalars, which 0-d draws can produce) to the device; others as they are."""
    if isinstance(x, (np.ndarray, np.generic)):
        return to_device(np.asarray(x), "cuda")
    return x


# ---- every op: forward and backward on the device equal the CPU -------------------------------
HOST_PARAMS = {"index", "positions"}  # host index arrays and positions are the supported form


@pytest.mark.parametrize("kind", DEVICES)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.op.__name__)
@settings(max_examples=6, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_op_on_device_matches_cpu(kind, spec, data):
    arrays, params = spec.draw(data)
    arrays = tuple(np.asarray(a) for a in arrays)
    rng = np.random.default_rng(0)

    cpu_inputs = [ag.Tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out = spec.fn(*cpu_inputs, **params)
    cotangent = rng.standard_normal(out.shape).astype(out.dtype)
    if out.requires_grad:
        out.backward(cotangent)

    with on_device(kind):
        dev_params = {k: v if k in HOST_PARAMS else to_cuda(v) for k, v in params.items()}
        dev_inputs = [ag.Tensor(to_cuda(a), requires_grad=a.dtype.kind == "f") for a in arrays]
        dev_out = spec.fn(*dev_inputs, **dev_params)
        assert dev_out.device == ("cpu" if spec.op is ToDevice else "cuda")
        assert dev_out.dtype == out.dtype and dev_out.shape == out.shape
        np.testing.assert_allclose(host(dev_out), out.data, rtol=1e-9, atol=1e-12)
        if out.requires_grad:
            dev_out.backward(to_device(cotangent, dev_out.device))
        for t, d in zip(cpu_inputs, dev_inputs):
            if t.grad is None:
                assert d.grad is None
                continue
            assert device_of(d.grad) == "cuda", f"{spec.op.name}: a gradient left the device"
            np.testing.assert_allclose(host(d.grad), t.grad, rtol=1e-9, atol=1e-12)


# ---- tensors and modules ---------------------------------------------------------------------
def test_tensor_to_round_trips_and_gradients_flow_back(device):
    x = ag.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x.to(device)
    assert y.device == "cuda" and x.device == "cpu" and y.to("cuda") is y
    z = (y * y).to("cpu")
    assert z.device == "cpu"
    np.testing.assert_array_equal(z.numpy(), x.data**2)
    np.testing.assert_array_equal(y.numpy(), x.data)  # .numpy() copies from the device
    z.sum().backward()
    assert device_of(x.grad) == "cpu"
    np.testing.assert_array_equal(x.grad, 2 * x.data)
    back = y.detach().to("cpu")
    assert back.device == "cpu" and back.dtype == x.dtype
    np.testing.assert_array_equal(back.data, x.data)


def test_mixing_devices_raises_a_clear_error(device):
    a = ag.tensor(np.ones(3), requires_grad=True)
    b = ag.tensor(np.ones(3), device=device)
    for op in (lambda: a + b, lambda: b * a, lambda: ag.concatenate([a, b])):
        with pytest.raises(RuntimeError, match="different devices.*cuda.*cpu|different devices.*cpu.*cuda"):
            op()


def test_default_device_places_new_tensors_and_layers(device):
    ag.set_default_device(device)
    assert ag.tensor([1.0, 2.0]).device == "cuda"
    assert ag.tensor([1.0], device="cpu").device == "cpu"
    layer = nn.Linear(3, 2)
    assert all(p.device == "cuda" for p in layer.parameters())


def test_module_to_and_state_dict_cross_devices(device):
    cpu = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    moved = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)).to(device)
    assert all(p.device == "cuda" for p in moved.parameters())
    moved.load_state_dict(cpu.state_dict())  # host arrays into device parameters
    for (name, p), (_, q) in zip(cpu.named_parameters(), moved.named_parameters()):
        assert q.device == "cuda", name
        np.testing.assert_array_equal(host(q), p.data)
    moved.to("cpu")
    assert all(p.device == "cpu" for p in moved.parameters())


def test_dropout_masks_are_drawn_on_the_device(device):
    x = ag.tensor(np.ones((64, 64)), requires_grad=True, device=device)
    y = ag.functional.dropout(x, p=0.5, rng=np.random.default_rng(0))
    assert y.device == "cuda" and 0.4 < float(host(y == 0).mean()) < 0.6
    y.sum().backward()
    assert device_of(x.grad) == "cuda"
    np.testing.assert_array_equal(host(x.grad), host(y))  # the same mask scales the gradient
    q = ag.tensor(np.ones((2, 2, 4, 3)), requires_grad=True, device=device)
    out = ag.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    out.sum().backward()
    assert out.device == "cuda" and device_of(q.grad) == "cuda"


def _mlp_step_params(device, steps=3):
    """A small classifier trained a few steps with clipping and AdamW; its final weights."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, 8)
    model = nn.Sequential(nn.Linear(5, 16, rng=np.random.default_rng(1)),
                          nn.LayerNorm(16), nn.Linear(16, 3, rng=np.random.default_rng(2)))
    model.to(device, dtype=np.float64)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    xt, yt = ag.tensor(x, device=device), to_device(y, device)
    for _ in range(steps):
        loss = ag.functional.cross_entropy(model(xt).tanh(), yt)
        loss.backward()
        optim.clip_grad_norm(model.parameters(), 0.5)
        opt.step()
        opt.zero_grad()
    for state in opt.state.values():
        assert all(device_of(v) == device for v in state.values() if hasattr(v, "shape"))
    return [host(p) for p in model.parameters()]


def test_adamw_steps_on_device_equal_cpu(device):
    for cpu, dev in zip(_mlp_step_params("cpu"), _mlp_step_params(device)):
        np.testing.assert_allclose(dev, cpu, rtol=1e-9, atol=1e-12)



# ---- the GPT ---------------------------------------------------------------------------------
VARIANTS = {"gpt2": {}, "llama": dict(pos="rope", mlp="swiglu", norm="rmsnorm"),
            "untied": dict(tie_weights=False)}


def tiny(dtype, **kw):
    return GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, dtype=dtype,
                     **kw)


def _batch():
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 13, (3, 8)), rng.integers(0, 13, (3, 8))
    targets[0, :2] = -100
    return idx, targets


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-8), ("float32", 2e-3)])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gpt_loss_and_every_grad_match_cpu(device, variant, dtype, rtol):
    idx, targets = _batch()
    cpu = GPT(tiny(dtype, **VARIANTS[variant]), seed=0)
    ag.set_default_device(device)  # built on the device: same weights (drawn on the host)
    gpu = GPT(tiny(dtype, **VARIANTS[variant]), seed=0)
    assert all(p.device == "cuda" for p in gpu.parameters())
    losses = []
    for model in (cpu, gpu):
        logits, loss = model(idx, targets)  # host ids and targets, as the trainer passes them
        loss.backward()
        losses.append((host(logits), float(host(loss))))
    np.testing.assert_allclose(losses[1][0], losses[0][0], rtol=rtol, atol=rtol * 1e-2)
    assert losses[1][1] == pytest.approx(losses[0][1], rel=rtol)
    for (name, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert device_of(q.grad) == "cuda", name
        np.testing.assert_allclose(host(q.grad), p.grad, rtol=rtol, atol=rtol * 1e-2, err_msg=name)


def test_gpt_training_steps_on_device_equal_cpu(device):
    idx, targets = _batch()
    finals = []
    for where in ("cpu", device):
        model = GPT(tiny("float64", dropout=0.0), seed=0).to(where)
        opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        for _ in range(3):
            _, loss = model(idx, targets)
            loss.backward()
            optim.clip_grad_norm(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
        finals.append([host(p) for p in model.parameters()])
    for cpu, dev in zip(*finals):
        np.testing.assert_allclose(dev, cpu, rtol=1e-8, atol=1e-11)


def test_generation_on_device(device):
    cpu = GPT(tiny("float64"), seed=0)
    gpu = GPT(tiny("float64"), seed=0).to(device)
    prompt = np.array([[1, 2, 3]])
    # 12 new tokens: past block_size (8), so the KV cache and the sliding window both run.
    greedy = [m.generate(prompt, 12, temperature=0) for m in (cpu, gpu)]
    np.testing.assert_array_equal(greedy[1], greedy[0])
    sampled = gpu.generate(prompt, 12, temperature=0.9, top_k=5, top_p=0.9, seed=0)
    assert isinstance(sampled, np.ndarray) and sampled.shape == (1, 15)
    assert sampled.min() >= 0 and sampled.max() < 13


# ---- static checks: NumPy outside the ops only on host values ----------------------------------
SCANNED = ["autograd/functional.py", "autograd/tensor.py", "autograd/engine.py",
           "autograd/function.py", "autograd/grad_mode.py", "autograd/nn", "autograd/optim",
           "tinyllm/model.py", "tinyllm/generate.py"]
# Types and constants are not computations on arrays: always fine.
HOST_SAFE_NAMES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                   "bool_", "dtype", "ndarray", "generic", "integer", "floating", "inf", "nan",
                   "pi", "newaxis"}
# (file, enclosing function) -> why every `np.` call in it touches host values only.
ALLOWED = {
    ("autograd/functional.py", "_keep_mask"):
        "the NumPy branch only (`xp is np`); device masks come from xp.random",
    ("autograd/functional.py", "scaled_dot_product_attention"):
        "np.broadcast_shapes works on shape tuples, not arrays",
    ("autograd/functional.py", "rotary_embedding"):
        "positions are host integers by contract (np.arange in tinyllm/model.py); the op moves "
        "its cos/sin tables with xp.asarray. A device `positions` array would raise here",
    ("autograd/tensor.py", "_as_array"):
        "device arrays return before any np call; the rest is Python data or host arrays",
    ("autograd/tensor.py", "Tensor.__repr__"): "applied to asnumpy(self.data), a host copy",
    ("autograd/nn/layers.py", "<module>"): "the host generator that draws initial weights",
    ("autograd/nn/layers.py", "manual_seed"): "the host generator that draws initial weights",
    ("autograd/nn/shards.py", "ThreadShards.__init__"): "host generators for the twins' dropout",
    ("autograd/nn/shards.py", "ThreadShards.seed"): "host generators for the twins' dropout",
    ("autograd/nn/layers.py", "_zeros"): "a host array that _param moves to the default device",
    ("autograd/nn/layers.py", "_ones"): "a host array that _param moves to the default device",
    ("tinyllm/model.py", "GPT.__init__"): "the host generator for weights and dropout",
    ("tinyllm/model.py", "GPT.forward"):
        "positions are host indices, like token ids (F.embedding moves host ids "
        "to the device of the weights)",
    ("tinyllm/generate.py", "filter_top_k"): "runs on host logits (stream passes asnumpy(...))",
    ("tinyllm/generate.py", "filter_top_p"): "runs on host logits (stream passes asnumpy(...))",
    ("tinyllm/generate.py", "sample_next"): "runs on host logits (stream passes asnumpy(...))",
    ("tinyllm/generate.py", "stream"): "token ids, the sampler's rng and stop flags live on the host",
    ("tinyllm/generate.py", "generate"): "token ids live on the host",
}


def _scanned_files():
    for entry in SCANNED:
        path = ROOT / entry
        yield from (sorted(path.rglob("*.py")) if path.is_dir() else [path])


def numpy_uses(path):
    """[(enclosing function's qualified name, attribute, line)] for each `np.<attr>` in the file,
    and the `from numpy import ...` lines (which would hide such uses from this scan)."""
    tree = ast.parse(path.read_text())
    aliases, hidden = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "numpy"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numpy":
            hidden.append(node.lineno)
    uses = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, [*scope, child.name])
                continue
            if (isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name)
                    and child.value.id in aliases):
                uses.append((".".join(scope) or "<module>", child.attr, child.lineno))
            visit(child, scope)

    visit(tree, [])
    return uses, hidden


def test_numpy_outside_the_ops_is_used_on_host_values_only():
    unexplained, seen, hidden = [], set(), []
    for path in _scanned_files():
        rel = str(path.relative_to(ROOT))
        uses, from_imports = numpy_uses(path)
        hidden += [f"{rel}:{line}" for line in from_imports]
        for scope, attr, line in uses:
            if attr in HOST_SAFE_NAMES:
                continue
            if (rel, scope) in ALLOWED:
                seen.add((rel, scope))
            else:
                unexplained.append(f"{rel}:{line} in {scope}: np.{attr}")
    assert not hidden, f"`from numpy import ...` hides NumPy calls from this scan: {hidden}"
    assert not unexplained, (
        "NumPy called on what may be tensor data (breaks on CuPy: use "
        "autograd.backend.get_array_module), or on a host value not yet listed in ALLOWED in "
        "tests/test_gpu.py with its reason:\n  " + "\n  ".join(unexplained))
    stale = sorted(set(ALLOWED) - seen)
    assert not stale, f"ALLOWED entries with no NumPy use left (remove them): {stale}"


def test_the_scan_finds_what_it_should(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import numpy as xx\nA = xx.zeros(3)\nclass C:\n    def f(self, a):\n"
                    "        return xx.exp(a) * xx.float32(2)\nfrom numpy import exp\n")
    uses, hidden = numpy_uses(path)
    assert uses == [("<module>", "zeros", 2), ("C.f", "exp", 5), ("C.f", "float32", 5)]
    assert hidden == [6]


def test_the_fake_device_is_strict():
    """The fake must keep refusing what CuPy refuses, or the "fake" tests prove nothing."""
    with fake_cupy.installed():
        d = ag.tensor(np.ones(3), device="cuda").data
        assert type(d).__module__.startswith("cupy") and device_of(d) == "cuda"
        for mistake in (lambda: d + np.ones(3), lambda: np.ones(3) * d, lambda: np.asarray(d),
                        lambda: np.where(np.ones(3) > 0, d, 0), lambda: d.__setitem__(0, np.ones(1))):
            with pytest.raises(TypeError):
                mistake()
        assert float((d * np.float32(2) + 1).sum()) == 9.0  # scalars are fine
        assert device_of(d[np.array([0, 2])]) == "cuda"  # host index arrays are fine
        np.testing.assert_array_equal(d.get(), np.ones(3))
