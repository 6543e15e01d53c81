"""The GPT: GPT-2 names, causality, whole-model gradcheck per option combination, overfitting,
and the config's validation."""

import itertools

import numpy as np
import pytest

import autograd as ag
from autograd.testing import gradcheck
from tinyllm import GPT, GPTConfig

rng = np.random.default_rng(0)


def tiny(**kw):
    base = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    return GPTConfig(**{**base, **kw})


def test_parameter_names_and_shapes_follow_gpt2():
    m = GPT(tiny(n_layer=1))
    shapes = {n: p.shape for n, p in m.named_parameters()}
    C, V, T = 8, 11, 8
    assert shapes == {
        "transformer.wte.weight": (V, C), "transformer.wpe.weight": (T, C),
        "transformer.h.0.ln_1.weight": (C,), "transformer.h.0.ln_1.bias": (C,),
        "transformer.h.0.attn.c_attn.weight": (C, 3 * C), "transformer.h.0.attn.c_attn.bias": (3 * C,),
        "transformer.h.0.attn.c_proj.weight": (C, C), "transformer.h.0.attn.c_proj.bias": (C,),
        "transformer.h.0.ln_2.weight": (C,), "transformer.h.0.ln_2.bias": (C,),
        "transformer.h.0.mlp.c_fc.weight": (C, 4 * C), "transformer.h.0.mlp.c_fc.bias": (4 * C,),
        "transformer.h.0.mlp.c_proj.weight": (4 * C, C), "transformer.h.0.mlp.c_proj.bias": (C,),
        "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,),
    }
    assert m.num_parameters() == sum(int(np.prod(s)) for s in shapes.values())
    untied = GPT(tiny(n_layer=1, tie_weights=False))
    assert dict(untied.named_parameters())["lm_head.weight"].shape == (V, C)


def test_residual_projections_use_the_scaled_init():
    m = GPT(GPTConfig(vocab_size=64, n_layer=8, n_embd=64, n_head=4))
    std = m.transformer.h[0].attn.c_proj.weight.data.std()
    assert abs(std - 0.02 / np.sqrt(16)) < 0.002
    assert abs(m.transformer.h[0].attn.c_attn.weight.data.std() - 0.02) < 0.002


OPTIONS = list(itertools.product(["learned", "rope"], ["gelu", "swiglu"], ["layernorm", "rmsnorm"]))


@pytest.mark.parametrize("pos,mlp,norm", OPTIONS)
def test_causality_future_tokens_change_nothing_before_them(pos, mlp, norm):
    m = GPT(tiny(pos=pos, mlp=mlp, norm=norm, dtype="float64"))
    idx = rng.integers(0, 10, (2, 8))
    idx[:, 6] = 10  # a token that appears only after position 5
    other = idx.copy()
    other[:, 5:] = rng.integers(0, 11, (2, 3))
    a, _ = m(idx)
    b, _ = m(other)
    np.testing.assert_array_equal(a.data[:, :5], b.data[:, :5])  # bit-identical
    # ... and the gradient of early logits with respect to later inputs is exactly zero: the
    # input embedding (untied, so the output layer does not touch it) of tokens that appear only
    # later, and the position embeddings of later positions.
    m = GPT(tiny(pos=pos, mlp=mlp, norm=norm, dtype="float64", tie_weights=False))
    early, _ = m(idx)
    early[:, :5].backward(rng.standard_normal((2, 5, 11)))
    used_later_only = set(idx[:, 5:].ravel()) - set(idx[:, :5].ravel())
    for token in used_later_only:
        assert (m.transformer.wte.weight.grad[token] == 0).all()
    if pos == "learned":
        assert (m.transformer.wpe.weight.grad[5:] == 0).all()
        assert (m.transformer.wpe.weight.grad[:5] != 0).any()


def _swap_in(model, names, tensors):
    """Point the model's parameter attributes at gradcheck's leaf tensors."""
    for name, t in zip(names, tensors):
        *path, attr = name.split(".")
        module = model
        for part in path:
            module = getattr(module, part)
        vars(module)[attr] = t


@pytest.mark.parametrize("pos,mlp,norm", OPTIONS)
def test_whole_model_gradcheck_in_float64(pos, mlp, norm):
    m = GPT(tiny(n_layer=1, n_embd=4, block_size=4, vocab_size=5, pos=pos, mlp=mlp, norm=norm,
                 dtype="float64"), seed=1)
    for p in m.parameters():  # larger weights than the 0.02 init, so every path matters
        p.data[...] = rng.standard_normal(p.shape) * 0.5 + (1.0 if p.ndim == 1 else 0.0)
    names = [n for n, _ in m.named_parameters()]
    arrays = [p.data.copy() for p in m.parameters()]
    idx = np.array([[0, 3, 1, 4], [2, 2, 0, 1]])
    targets = np.array([[3, 1, 4, 0], [2, 0, 1, -100]])

    def loss(*tensors):
        _swap_in(m, names, tensors)
        return m(idx, targets)[1]

    assert gradcheck(loss, *arrays, full_check_size=16)


def test_overfits_one_batch_quickly():
    m = GPT(tiny(n_embd=32, n_head=4), seed=0)
    opt = ag.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.0)
    idx = rng.integers(0, 11, (4, 8))
    first = None
    for _ in range(120):
        _, loss = m(idx[:, :-1], idx[:, 1:])
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert first > 2.0 and loss.item() < 0.1


def test_float32_model_computes_in_float32():
    m = GPT(tiny())
    logits, loss = m(rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8)))
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    loss.backward()
    assert all(p.grad.dtype == np.float32 for p in m.parameters())


def test_bad_config_and_input_are_explained():
    with pytest.raises(ValueError, match="multiple of n_head"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="pos must be one of"):
        GPTConfig(pos="alibi")
    m = GPT(tiny())
    with pytest.raises(ValueError, match="longer than block_size"):
        m(np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        m(np.zeros(4, dtype=np.int64))
    with pytest.raises(IndexError, match=r"ids must be in \[0, 11\)"):
        m(np.full((1, 3), 11))


def test_flops_estimate():
    c = tiny()
    m = GPT(c)
    n = m.num_parameters() - c.block_size * c.n_embd
    assert m.estimate_flops_per_token() == 6 * n + 12 * c.n_layer * c.block_size * c.n_embd
