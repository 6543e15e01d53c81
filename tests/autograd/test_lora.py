"""The LoRA linear layer: forward formula, gradients (float64 gradcheck, random cotangents),
frozen base, merge/unmerge, disabling adapters."""

import numpy as np
import pytest

import autograd as ag
from autograd import nn
from autograd.testing import gradcheck


def _layer(in_f=5, out_f=7, rank=3, alpha=6.0, dropout=0.0, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    base = nn.Linear(in_f, out_f, bias=bias, dtype="float64", rng=rng)
    if bias:
        base.bias.data = rng.standard_normal(out_f)
    layer = nn.LoRALinear.from_linear(base, rank=rank, alpha=alpha, dropout=dropout, rng=rng)
    layer.lora_B.data = rng.standard_normal(layer.lora_B.shape)  # B = 0 would hide A's gradient
    return base, layer


def test_shapes_follow_the_engines_in_out_convention():
    base, layer = _layer(in_f=5, out_f=7, rank=3)
    assert layer.weight is base.weight and layer.bias is base.bias  # shared, not copied
    assert layer.lora_A.shape == (5, 3) and layer.lora_B.shape == (3, 7)
    assert layer.delta_weight().shape == base.weight.shape
    assert layer.scale == 6.0 / 3


def test_b_starts_at_zero_so_the_layer_starts_as_the_base():
    base = nn.Linear(4, 6, dtype="float64")
    layer = nn.LoRALinear.from_linear(base, rank=2, alpha=4.0)
    assert not layer.lora_B.data.any() and layer.lora_A.data.any()
    x = np.random.default_rng(1).standard_normal((3, 4))
    np.testing.assert_array_equal(layer(ag.tensor(x)).data, base(ag.tensor(x)).data)


def test_forward_matches_the_formula():
    base, layer = _layer()
    x = np.random.default_rng(2).standard_normal((2, 3, 5))
    W, b, A, B = base.weight.data, base.bias.data, layer.lora_A.data, layer.lora_B.data
    expected = x @ W + b + (6.0 / 3) * (x @ A @ B)
    np.testing.assert_allclose(layer(ag.tensor(x)).data, expected, rtol=1e-12, atol=1e-12)


def test_only_the_adapter_requires_grad():
    base, layer = _layer()
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A", "lora_B"}
    x = ag.tensor(np.random.default_rng(3).standard_normal((4, 5)))
    (layer(x) * ag.tensor(np.random.default_rng(4).standard_normal((4, 7)))).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is None
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None


def test_gradcheck_x_a_b_in_float64():
    _, layer = _layer()
    x = np.random.default_rng(5).standard_normal((2, 3, 5))

    def fn(x, A, B):
        layer.lora_A, layer.lora_B = A, B
        return layer(x)

    gradcheck(fn, x, layer.lora_A.data.copy(), layer.lora_B.data.copy(), seed=11)


def test_gradients_match_the_hand_derivation():
    """dL/dB = s (x A)^T g and dL/dA = s x^T g B^T, the formulas example 07 derives."""
    _, layer = _layer()
    rng = np.random.default_rng(6)
    x, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 7))
    layer(ag.tensor(x)).backward(g)
    A, B, s = layer.lora_A.data, layer.lora_B.data, layer.scale
    np.testing.assert_allclose(layer.lora_B.grad, s * (x @ A).T @ g, rtol=1e-12)
    np.testing.assert_allclose(layer.lora_A.grad, s * x.T @ g @ B.T, rtol=1e-12)


def test_with_b_zero_only_b_gets_a_gradient_at_first():
    base = nn.Linear(5, 7, dtype="float64")
    layer = nn.LoRALinear.from_linear(base, rank=3)
    rng = np.random.default_rng(7)
    layer(ag.tensor(rng.standard_normal((4, 5)))).backward(rng.standard_normal((4, 7)))
    assert not layer.lora_A.grad.any() and layer.lora_B.grad.any()


def test_merge_and_unmerge_are_exact_to_float_tolerance():
    base, layer = _layer()
    original = base.weight.data.copy()
    x = ag.tensor(np.random.default_rng(8).standard_normal((3, 5)))
    adapted = layer(x).data
    layer.merge()
    assert layer.merged
    np.testing.assert_allclose(layer(x).data, adapted, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F_linear(x.data, layer.weight.data, layer.bias.data), adapted,
                               rtol=1e-12, atol=1e-12)  # W itself now holds the update
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()
    layer.unmerge()
    np.testing.assert_allclose(base.weight.data, original, rtol=0, atol=1e-14)
    np.testing.assert_allclose(layer(x).data, adapted, rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()


def F_linear(x, w, b):
    return x @ w + b


def test_merge_in_float32_is_within_float32_rounding():
    rng = np.random.default_rng(9)
    base = nn.Linear(64, 32, dtype="float32", rng=rng)
    layer = nn.LoRALinear.from_linear(base, rank=4, alpha=8, rng=rng)
    layer.lora_B.data = rng.standard_normal((4, 32)).astype(np.float32) * 0.01
    before = base.weight.data.copy()
    layer.merge().unmerge()
    np.testing.assert_allclose(base.weight.data, before, rtol=0, atol=1e-6)


def test_to_linear_is_a_plain_linear_with_the_update():
    base, layer = _layer()
    x = ag.tensor(np.random.default_rng(10).standard_normal((3, 5)))
    plain = layer.to_linear()
    assert type(plain) is nn.Linear
    np.testing.assert_allclose(plain(x).data, layer(x).data, rtol=1e-12, atol=1e-12)
    assert plain.weight is not base.weight


def test_disable_adapters_gives_the_base_layer_and_restores():
    base, layer = _layer()
    model = nn.Sequential(layer)
    x = ag.tensor(np.random.default_rng(11).standard_normal((3, 5)))
    with nn.disable_adapters(model):
        np.testing.assert_array_equal(model(x).data, base(x).data)
    assert layer.adapter_enabled
    assert not np.allclose(model(x).data, base(x).data)
    layer.merge()
    with pytest.raises(RuntimeError, match="merged"):
        with nn.disable_adapters(model):
            pass


def test_dropout_acts_on_the_adapter_input_only():
    base, layer = _layer(dropout=0.5)
    layer.dropout_rng = np.random.default_rng(12)
    x = ag.tensor(np.random.default_rng(13).standard_normal((50, 5)))
    out = layer(x).data
    base_out = base(x).data
    delta = out - base_out
    # Each row's update is s * (mask * x / (1 - p)) @ A @ B for some mask: reconstruct one.
    assert not np.allclose(delta, layer.scale * (x.data @ layer.lora_A.data @ layer.lora_B.data))
    layer.eval()
    np.testing.assert_allclose(layer(x).data - base_out,
                               layer.scale * (x.data @ layer.lora_A.data @ layer.lora_B.data),
                               rtol=1e-10, atol=1e-12)


def test_bad_rank_and_dropout_are_refused():
    with pytest.raises(ValueError, match="rank"):
        nn.LoRALinear.from_linear(nn.Linear(3, 3), rank=0)
    with pytest.raises(ValueError, match="dropout"):
        nn.LoRALinear.from_linear(nn.Linear(3, 3), rank=2, dropout=1.0)


def test_constructed_directly_it_is_a_linear_with_an_adapter():
    layer = nn.LoRALinear(6, 4, rank=2, alpha=2.0)
    assert isinstance(layer, nn.Linear)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias", "lora_A", "lora_B"]
    assert not layer.weight.requires_grad and layer.lora_A.requires_grad
    assert "rank=2" in repr(layer)
