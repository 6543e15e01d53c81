"""Optimizers against their formulas written out in NumPy float64, their properties, saving and
resuming, param groups, gradient clipping and the learning-rate schedules."""

import ast
import io
import json
import math
import pathlib
import tracemalloc

import numpy as np
import pytest

import autograd as ag
from autograd import nn, optim
from autograd.backend import asnumpy, get_array_module, to_device

SHAPES = [(3, 4), (4,), ()]


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def make_grads(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]


def run(opt, params, grads):
    """Feed the given gradients to the optimizer, one step each (on the parameters' device)."""
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = get_array_module(p.data).asarray(g, dtype=p.dtype)
        opt.step()


# ---- closed forms ----------------------------------------------------------------------------
def adamw_reference(p, grads, lr, betas, eps, wd, amsgrad=False):
    """AdamW (PyTorch's form), one parameter, float64, straight from the paper's formula."""
    b1, b2 = betas
    p = np.array(p, dtype=np.float64)
    m, v, v_max = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p = p * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        v_max = np.maximum(v_max, v)
        m_hat = m / (1 - b1**t)
        v_hat = (v_max if amsgrad else v) / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p, m, v


def sgd_reference(p, grads, lr, momentum=0.0, nesterov=False, wd=0.0):
    p = np.array(p, dtype=np.float64)
    buf = None
    for g in grads:
        g = g + wd * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adamw_matches_closed_form(wd, amsgrad):
    params = make_params()
    start = [p.data.copy() for p in params]
    grads = make_grads(7)
    hyper = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6)
    opt = optim.AdamW(params, weight_decay=wd, amsgrad=amsgrad, **hyper)
    run(opt, params, grads)
    for i, p in enumerate(params):
        ref, m, v = adamw_reference(start[i], [g[i] for g in grads], wd=wd, amsgrad=amsgrad,
                                    **hyper)
        np.testing.assert_allclose(p.data, ref, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(opt.state[p]["exp_avg"], m, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(opt.state[p]["exp_avg_sq"], v, rtol=1e-13, atol=1e-15)
        assert opt.state[p]["step"] == 7


def test_adamw_zero_grad_shrinks_each_weight_by_exactly_one_minus_lr_wd():
    params = make_params(np.float32)
    start = [p.data.copy() for p in params]
    opt = optim.AdamW(params, lr=0.01, weight_decay=0.3)
    run(opt, params, [[np.zeros(s) for s in SHAPES]])
    for p, p0 in zip(params, start):
        assert p.dtype == np.float32
        # The factor in float32, as the in-place update uses it. (NumPy 1.x would compute a 0-d
        # float32 array times a Python float in float64, NumPy 2 in float32: say which.)
        np.testing.assert_array_equal(p.data, p0 * np.float32(1 - 0.01 * 0.3))


def test_adamw_without_decay_is_adam_and_decay_is_decoupled():
    grads = make_grads(5)
    adamw = make_params()
    run(optim.AdamW(adamw, lr=0.1, weight_decay=0.0), adamw, grads)
    for i, p in enumerate(adamw):
        adam, _, _ = adamw_reference(make_params()[i].data, [g[i] for g in grads], lr=0.1,
                                     betas=(0.9, 0.999), eps=1e-8, wd=0.0)
        np.testing.assert_allclose(p.data, adam, rtol=1e-13, atol=1e-15)
    # Decoupled decay differs from L2 decay added to the gradient (which Adam rescales).
    decoupled, coupled = make_params(), make_params()
    run(optim.AdamW(decoupled, lr=0.1, weight_decay=0.5), decoupled, grads)
    opt = optim.AdamW(coupled, lr=0.1, weight_decay=0.0)
    for step_grads in grads:
        for p, g in zip(coupled, step_grads):
            p.grad = g + 0.5 * p.data
        opt.step()
    assert not np.allclose(decoupled[0].data, coupled[0].data)


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.0, False, 0.1),
                                                  (0.9, False, 0.0), (0.9, False, 0.1),
                                                  (0.9, True, 0.0), (0.8, True, 0.2)])
def test_sgd_matches_hand_computation(momentum, nesterov, wd):
    params = make_params()
    start = [p.data.copy() for p in params]
    grads = make_grads(6)
    opt = optim.SGD(params, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    run(opt, params, grads)
    for i, p in enumerate(params):
        ref = sgd_reference(start[i], [g[i] for g in grads], 0.1, momentum, nesterov, wd)
        np.testing.assert_allclose(p.data, ref, rtol=1e-13, atol=1e-15)


def test_sgd_first_momentum_step_is_plain_sgd_and_grad_is_untouched():
    (p,) = params = [nn.Parameter(np.array([1.0, -2.0]))]
    opt = optim.SGD(params, lr=0.5, momentum=0.9, weight_decay=0.1)
    g = np.array([0.2, 0.4])
    p.grad = g.copy()
    opt.step()
    np.testing.assert_allclose(p.data, [1.0 - 0.5 * (0.2 + 0.1), -2.0 - 0.5 * (0.4 - 0.2)])
    np.testing.assert_array_equal(p.grad, g)  # the optimizer reads the gradient, never edits it


# ---- dtype, allocation and backend hygiene -------------------------------------------------
@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.AdamW(ps, lr=np.float64(1e-2), amsgrad=True),
    lambda ps: optim.SGD(ps, lr=np.float64(1e-2), momentum=0.9, nesterov=True,
                         weight_decay=np.float64(0.1)),
])
def test_float32_stays_float32_even_with_numpy_float64_hyperparameters(make_opt):
    params = make_params(np.float32)
    opt = make_opt(params)
    run(opt, params, make_grads(3))
    for p in params:
        assert p.data.dtype == np.float32
        for value in opt.state[p].values():
            assert not hasattr(value, "dtype") or value.dtype == np.float32


def test_float32_adamw_tracks_the_float64_formula():
    params = make_params(np.float32)
    start = [p.data.astype(np.float64) for p in params]
    grads = make_grads(20)
    run(optim.AdamW(params, lr=1e-2, weight_decay=0.1), params, grads)
    for i, p in enumerate(params):
        ref, _, _ = adamw_reference(start[i], [g[i] for g in grads], 1e-2, (0.9, 0.999), 1e-8,
                                    0.1)
        np.testing.assert_allclose(p.data, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.AdamW(ps, lr=1e-3, amsgrad=True),
    lambda ps: optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True, weight_decay=0.1),
])
def test_a_step_allocates_nothing_full_size(make_opt):
    p = nn.Parameter(np.ones(100_000, dtype=np.float32))  # 400 kB
    opt = make_opt([p])
    p.grad = np.full(p.shape, 0.5, dtype=np.float32)
    opt.step()  # the first step allocates the buffers
    tracemalloc.start()
    try:
        opt.step()
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40_000, f"a step allocated {peak} bytes"


def test_optim_never_imports_numpy():
    """Updates must reach the array library through get_array_module (NumPy or CuPy)."""
    root = pathlib.Path(optim.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n and n.split(".")[0] == "numpy" for n in names), path.name


# ---- saving and resuming ----------------------------------------------------------------------
def _save(opt):
    """Write the state dict the way a checkpoint would: arrays to .npz, the rest to JSON."""
    sd = opt.state_dict()
    arrays, numbers = {}, {}
    for i, entry in sd["state"].items():
        for k, v in entry.items():
            if hasattr(v, "shape"):
                arrays[f"{i}/{k}"] = v
            else:
                numbers.setdefault(str(i), {})[k] = v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), json.dumps({"groups": sd["param_groups"], "numbers": numbers})


def _load(blob, text):
    meta = json.loads(text)
    state = {int(i): dict(v) for i, v in meta["numbers"].items()}
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        for key in z.files:
            i, name = key.split("/")
            state.setdefault(int(i), {})[name] = z[key]
    return {"state": state, "param_groups": meta["groups"]}


@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.AdamW(ps, lr=0.01, betas=(0.8, 0.9), amsgrad=True),
    lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01),
])
def test_state_dict_round_trip_resumes_bit_identically(make_opt):
    grads = make_grads(10)
    params = make_params(np.float32)
    opt = make_opt(params)
    run(opt, params, grads[:5])
    saved_params = [p.data.copy() for p in params]
    blob, text = _save(opt)
    run(opt, params, grads[5:])

    resumed = make_params(np.float32, seed=99)
    for p, data in zip(resumed, saved_params):
        p.data[...] = data
    opt2 = make_opt(resumed)
    opt2.set_lr(123.0)  # overwritten by the load
    opt2.load_state_dict(_load(blob, text))
    assert opt2.param_groups[0]["lr"] == 0.01
    run(opt2, resumed, grads[5:])
    for a, b in zip(params, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_copies_and_checks_structure():
    params = make_params()
    opt = optim.AdamW(params)
    run(opt, params, make_grads(1))
    other = optim.AdamW(make_params())
    other.load_state_dict(opt.state_dict())
    key = other._all_params()[0]
    assert other.state[key]["exp_avg"] is not opt.state[params[0]]["exp_avg"]
    sd = opt.state_dict()
    sd["state"][0]["step"] = np.array(1)  # a count that went through np.savez
    other.load_state_dict(sd)
    assert type(other.state[key]["step"]) is int
    sd["state"][0]["exp_avg"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(sd)
    with pytest.raises(ValueError, match="param groups"):
        optim.AdamW([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(
            opt.state_dict())
    with pytest.raises(ValueError, match="parameters"):
        optim.AdamW(params[:2]).load_state_dict(opt.state_dict())


# ---- param groups -----------------------------------------------------------------------------
def test_param_groups_use_their_own_lr_and_weight_decay():
    a, b = nn.Parameter(np.array([1.0, 2.0])), nn.Parameter(np.array([3.0]))
    opt = optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "weight_decay": 0.5}], lr=0.01)
    assert opt.param_groups[0]["weight_decay"] == 0.0 and opt.param_groups[1]["lr"] == 0.01
    a.grad, b.grad = np.array([1.0, 1.0]), np.array([1.0])
    opt.step()
    np.testing.assert_allclose(a.data, [0.9, 1.9])
    np.testing.assert_allclose(b.data, [3.0 - 0.01 * (1.0 + 0.5 * 3.0)])
    # AdamW: a group without decay (biases, norms) keeps its weights under a zero gradient
    w, bias = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(3))
    opt = optim.AdamW([{"params": [w]}, {"params": [bias], "weight_decay": 0.0}], lr=0.1,
                      weight_decay=0.2)
    w.grad, bias.grad = np.zeros(3), np.zeros(3)
    opt.step()
    np.testing.assert_array_equal(w.data, 1 - 0.1 * 0.2)
    np.testing.assert_array_equal(bias.data, 1.0)


def test_set_lr_honours_lr_scale_and_zero_grad():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.AdamW([{"params": [a]}, {"params": [b], "lr_scale": 0.1}])
    opt.set_lr(np.float64(0.5))
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.05]
    assert all(type(g["lr"]) is float for g in opt.param_groups)
    a.grad = b.grad = np.ones(2)
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    opt.step()  # parameters without a gradient are skipped
    assert opt.state == {}


def test_optimizer_rejects_bad_input():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(TypeError):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        optim.AdamW([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(ValueError, match="require grad"):
        optim.SGD([ag.tensor(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.AdamW([p], betas=(0.9, 1.0))


# ---- gradient clipping ------------------------------------------------------------------------
def test_clip_grad_norm_scales_all_gradients_together():
    params = make_params()
    grads = make_grads(1)[0]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    frozen = nn.Parameter(np.ones(3))  # no gradient: skipped
    total = math.sqrt(sum(float((g**2).sum()) for g in grads))
    norm = optim.clip_grad_norm(params + [frozen], max_norm=1.0)
    assert type(norm) is float and norm == pytest.approx(total, rel=1e-12)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad, g / (total + 1e-6), rtol=1e-12)
    after = math.sqrt(sum(float((p.grad**2).sum()) for p in params))
    assert after == pytest.approx(1.0, rel=1e-5)
    # under the limit: untouched
    assert optim.clip_grad_norm(params, max_norm=10.0) == pytest.approx(after)
    np.testing.assert_allclose(params[0].grad, grads[0] / (total + 1e-6), rtol=1e-12)
    assert optim.clip_grad_norm([frozen], 1.0) == 0.0


def test_clip_grad_norm_keeps_float32_and_survives_float16_squares():
    p = nn.Parameter(np.ones(4, dtype=np.float32))
    p.grad = np.full(4, 3.0, dtype=np.float32)
    assert optim.clip_grad_norm(p, 3.0) == pytest.approx(6.0)
    assert p.grad.dtype == np.float32
    np.testing.assert_allclose(p.grad, 1.5, rtol=1e-6)
    h = nn.Parameter(np.ones(4, dtype=np.float16))
    h.grad = np.full(4, 300.0, dtype=np.float16)  # 300^2 overflows float16
    assert optim.clip_grad_norm([h], 1e9) == pytest.approx(600.0)


# ---- schedules -------------------------------------------------------------------------------
def test_warmup_cosine_shape():
    kw = dict(max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    lrs = [optim.warmup_cosine(s, **kw) for s in range(130)]
    assert all(type(x) is float for x in lrs)
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(lrs[:10]), 0.1)  # a straight ramp
    assert lrs[10] == pytest.approx(1.0)  # the cosine starts at the top
    assert lrs[60] == pytest.approx(0.55)  # halfway down: the midpoint of max and min
    assert lrs[110] == pytest.approx(0.1) and lrs[129] == 0.1  # the floor
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert min(lrs[10:]) == 0.1  # the cosine never undershoots the floor


def test_linear_decay_and_constant():
    lrs = [optim.linear_decay(s, max_lr=2.0, total_steps=20, min_lr=0.0, warmup_steps=4)
           for s in range(25)]
    np.testing.assert_allclose(lrs[:4], [0.5, 1.0, 1.5, 2.0])
    assert lrs[4] == 2.0 and lrs[12] == pytest.approx(1.0) and lrs[20:] == [0.0] * 5
    np.testing.assert_allclose(np.diff(lrs[4:21]), -2.0 / 16)
    assert optim.linear_decay(0, 1.0, 10) == 1.0
    assert optim.constant(7, 3e-4) == 3e-4


def test_a_schedule_drives_the_optimizer():
    p = nn.Parameter(np.zeros(1))
    opt = optim.SGD([p], lr=0.0)
    for step in range(5):
        opt.set_lr(optim.linear_decay(step, 1.0, total_steps=4))
        p.grad = np.ones(1)
        opt.step()
    np.testing.assert_allclose(p.data, [-(1.0 + 0.75 + 0.5 + 0.25 + 0.0)])


@pytest.mark.gpu
@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
    lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1),
])
def test_optimizers_and_clipping_on_cupy_match_numpy(make_opt):
    grads = make_grads(5)
    cpu, gpu = make_params(np.float32), make_params(np.float32)
    for p in gpu:
        p.data = to_device(p.data, "cuda")
    opt_cpu, opt_gpu = make_opt(cpu), make_opt(gpu)
    run(opt_cpu, cpu, grads)
    run(opt_gpu, gpu, grads)
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(asnumpy(b.data), a.data, rtol=1e-5, atol=1e-6)
        assert b.data.dtype == np.float32
    assert optim.clip_grad_norm(gpu, 0.1) == pytest.approx(optim.clip_grad_norm(cpu, 0.1),
                                                           rel=1e-5)
    opt_cpu.load_state_dict(opt_gpu.state_dict())  # device arrays load onto the host
    assert type(opt_cpu.state[cpu[0]]["exp_avg" if "betas" in opt_cpu.defaults
                                       else "momentum_buffer"]) is np.ndarray


# ---- PyTorch as an oracle (only where torch happens to be installed) --------------------------
def test_trajectories_match_torch():
    torch = pytest.importorskip("torch")
    grads = make_grads(8)
    for ours, theirs in [
        (lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=0.1, amsgrad=True),
         lambda ts: torch.optim.AdamW(ts, lr=0.05, weight_decay=0.1, amsgrad=True)),
        (lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
         lambda ts: torch.optim.SGD(ts, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ]:
        params = make_params()
        tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
        run(ours(params), params, grads)
        opt = theirs(tensors)
        for step_grads in grads:
            for t, g in zip(tensors, step_grads):
                t.grad = torch.tensor(g)
            opt.step()
        for p, t in zip(params, tensors):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-14)
