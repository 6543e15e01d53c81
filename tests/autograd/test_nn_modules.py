"""Modules: parameter bookkeeping (names, nesting, sharing), saving and loading, modes, dtype and
initialisation, and each layer's forward against plain NumPy."""

import numpy as np
import pytest

import autograd as ag
from autograd import nn
from autograd.testing import gradcheck


class Block(nn.Module):
    """A transformer-block-shaped module, to check GPT-2 style names."""

    def __init__(self, n_embd, n_head, dtype=None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, dtype=dtype)
        self.attn = nn.CausalSelfAttention(n_embd, n_head, dtype=dtype)

    def forward(self, x):
        return x + self.attn(self.ln_1(x))


class Tiny(nn.Module):
    def __init__(self, n_layer=2, n_embd=8, n_head=2, dtype=None):
        super().__init__()
        self.wte = nn.Embedding(11, n_embd, dtype=dtype)
        self.h = nn.ModuleList([Block(n_embd, n_head, dtype) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, dtype=dtype)
        self.drop = nn.Dropout(0.5)

    def forward(self, ids):
        x = self.wte(ids)
        for block in self.h:
            x = block(x)
        return self.ln_f(self.drop(x))


# ---- bookkeeping -------------------------------------------------------------------------------
def test_dotted_names_follow_attributes_and_module_lists():
    names = [n for n, _ in Tiny().named_parameters()]
    block = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
             "attn.c_proj.weight", "attn.c_proj.bias"]
    assert names == (["wte.weight"] + [f"h.0.{n}" for n in block] + [f"h.1.{n}" for n in block]
                     + ["ln_f.weight", "ln_f.bias"])
    params = dict(Tiny().named_parameters())
    assert params["h.0.attn.c_attn.weight"].shape == (8, 24)
    assert params["h.1.attn.c_proj.bias"].shape == (8,)
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params.values())


def test_named_modules_and_children():
    model = Tiny()
    names = [n for n, _ in model.named_modules()]
    assert names[:5] == ["", "wte", "h", "h.0", "h.0.ln_1"]
    assert "h.1.attn.c_proj" in names and "h.1.attn.resid_dropout" in names
    assert [n for n, _ in model.named_children()] == ["wte", "h", "ln_f", "drop"]
    assert model.modules()[0] is model


def test_sequential_names_and_forward():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, bias=False))
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.weight"]
    assert len(model) == 2 and isinstance(model[1], nn.Linear)
    x = np.ones((5, 3), dtype=np.float32)
    expected = (x @ model[0].weight.data + model[0].bias.data) @ model[1].weight.data
    np.testing.assert_allclose(model(ag.tensor(x)).data, expected, rtol=1e-6)
    with pytest.raises(TypeError):
        nn.Sequential(nn.Linear(1, 1), "not a module")


def test_module_list_append_and_index():
    ml = nn.ModuleList()
    ml.append(nn.Linear(2, 2)).append(nn.LayerNorm(2))
    assert len(ml) == 2 and isinstance(ml[-1], nn.LayerNorm)
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(TypeError):
        ml.append(3)


def test_plain_list_of_modules_is_not_registered():
    # The reason ModuleList exists: a Python list hides its modules from the parent.
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(2, 2)]

    assert Bad().parameters() == []


def test_shared_parameter_counted_once_but_saved_under_each_name():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(5, 3)
            self.lm_head = nn.Linear(3, 5, bias=False)
            self.lm_head.weight = self.wte.weight  # tied, as GPT-2 (shapes differ here; fine)

    model = Tied()
    assert [n for n, _ in model.named_parameters()] == ["wte.weight"]
    assert model.num_parameters() == 15
    assert sorted(model.state_dict()) == ["lm_head.weight", "wte.weight"]


def test_num_parameters():
    assert nn.Linear(3, 4).num_parameters() == 3 * 4 + 4
    assert nn.Linear(3, 4, bias=False).num_parameters() == 12
    assert nn.LayerNorm(5).num_parameters() == 10
    assert nn.LayerNorm(5, bias=False).num_parameters() == 5
    assert nn.RMSNorm(5).num_parameters() == 5
    assert nn.Dropout(0.1).num_parameters() == 0
    assert nn.CausalSelfAttention(8, 2).num_parameters() == 8 * 24 + 24 + 8 * 8 + 8
    model = Tiny()
    model.wte.requires_grad_(False)
    assert model.num_parameters() - model.num_parameters(trainable_only=True) == 11 * 8


def test_train_eval_propagate_to_every_module():
    model = Tiny()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_call_runs_forward_and_zero_grad_clears():
    model = Tiny().eval()
    out = model(np.array([[1, 2, 3]]))
    assert out.shape == (1, 3, 8)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(NotImplementedError):
        nn.Module()(1)


def test_repr_shows_the_tree():
    text = repr(Tiny(n_layer=1))
    assert "(h): ModuleList(" in text and "(c_attn): Linear(in_features=8, out_features=24" in text
    assert repr(nn.Parameter(np.zeros(2))).startswith("Parameter(")


def test_to_cpu_and_cast():
    model = Tiny()
    assert model.to("cpu") is model
    model.to(dtype=np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    with pytest.raises(ValueError):
        model.to("tpu")


# ---- state dict --------------------------------------------------------------------------------
def test_state_dict_round_trip():
    nn.manual_seed(1)
    a = Tiny()
    nn.manual_seed(2)
    b = Tiny()
    assert not np.array_equal(a.wte.weight.data, b.wte.weight.data)
    saved = {k: v.copy() for k, v in a.state_dict().items()}
    result = b.load_state_dict(saved)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, saved[k])
    # loading copies: the model never aliases the caller's arrays
    saved["wte.weight"][:] = 0
    assert b.wte.weight.data.any()


def test_load_casts_to_the_parameter_dtype():
    layer = nn.Linear(2, 3)
    layer.load_state_dict({"weight": np.ones((2, 3)), "bias": ag.tensor(np.zeros(3))})
    assert layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, 1.0)


def test_strict_loading_names_missing_unexpected_and_misshaped_keys():
    model = Tiny(n_layer=1)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    before = model.wte.weight.data.copy()
    del state["h.0.ln_1.bias"]
    state["h.0.mlp.c_fc.weight"] = np.zeros((8, 32))
    state["wte.weight"] = np.zeros((12, 8))
    with pytest.raises(nn.StateDictError) as err:
        model.load_state_dict(state)
    message = str(err.value)
    assert "h.0.ln_1.bias" in message and "missing" in message
    assert "h.0.mlp.c_fc.weight" in message and "unexpected" in message
    assert "wte.weight" in message and "(12, 8)" in message and "(11, 8)" in message
    np.testing.assert_array_equal(model.wte.weight.data, before)  # nothing was loaded


def test_non_strict_loading_reports_and_skips():
    model = Tiny(n_layer=1)
    state = {k: np.zeros(v.shape) for k, v in model.state_dict().items()}
    del state["ln_f.bias"]
    state["extra"] = np.zeros(1)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["ln_f.bias"] and result.unexpected_keys == ["extra"]
    assert not model.wte.weight.data.any()
    state["wte.weight"] = np.zeros((3, 3))
    with pytest.raises(nn.StateDictError, match="wte.weight"):
        model.load_state_dict(state, strict=False)  # a wrong shape is never skipped


# ---- dtype and initialisation -----------------------------------------------------------------
def test_dtype_argument_on_every_layer():
    for dtype in (np.float32, np.float64):
        model = Tiny(dtype=dtype).eval()
        assert all(p.dtype == dtype for p in model.parameters())
        assert model(np.array([[0, 1]])).dtype == dtype
    assert nn.RMSNorm(3, dtype=np.float64).weight.dtype == np.float64
    assert nn.Linear(2, 2).weight.dtype == np.float32  # the default


def test_init_depends_on_fan_in_and_is_reproducible():
    nn.manual_seed(0)
    a = nn.Linear(256, 512)
    nn.manual_seed(0)
    b = nn.Linear(256, 512)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    # std 1/sqrt(in_features) (issue 11, item 23; it was GPT-2's 0.02 whatever the fan-in)
    assert abs(a.weight.data.std() - 1 / 16) < 0.002 and abs(a.weight.data.mean()) < 0.002
    assert abs(nn.Linear(400, 300).weight.data.std() - 0.05) < 0.002
    assert abs(nn.Linear(4, 3000).weight.data.std() - 0.5) < 0.02
    assert abs(nn.Linear(256, 512, std=0.02).weight.data.std() - 0.02) < 0.001  # GPT-2 asks
    assert not a.bias.data.any()
    c = nn.Linear(256, 512, rng=np.random.default_rng(0))
    d = nn.Linear(256, 512, rng=np.random.default_rng(0), dtype=np.float64)
    np.testing.assert_allclose(c.weight.data, d.weight.data, rtol=1e-6)  # same draw, any dtype
    emb = nn.Embedding(1000, 64)
    assert abs(emb.weight.data.std() - 0.02) < 0.001
    ln = nn.LayerNorm(7)
    np.testing.assert_array_equal(ln.weight.data, 1.0)
    np.testing.assert_array_equal(ln.bias.data, 0.0)
    np.testing.assert_array_equal(nn.RMSNorm(7).weight.data, 1.0)


# ---- layers against NumPy ---------------------------------------------------------------------
def test_linear_embedding_norms_forward():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    lin = nn.Linear(4, 5, dtype=np.float64, std=1.0)
    np.testing.assert_allclose(lin(x).data, x @ lin.weight.data + lin.bias.data, rtol=1e-12)
    emb = nn.Embedding(6, 4, dtype=np.float64)
    ids = np.array([[0, 5, 5], [2, 2, 1]])
    np.testing.assert_array_equal(emb(ids).data, emb.weight.data[ids])
    ln = nn.LayerNorm(4, dtype=np.float64)
    ln.weight.data[:] = rng.standard_normal(4)
    ln.bias.data[:] = rng.standard_normal(4)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(x).data, ref * ln.weight.data + ln.bias.data, rtol=1e-10)
    rms = nn.RMSNorm(4, dtype=np.float64)
    rms.weight.data[:] = rng.standard_normal(4)
    ref = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * rms.weight.data
    np.testing.assert_allclose(rms(x).data, ref, rtol=1e-10)


def test_dropout_train_and_eval():
    drop = nn.Dropout(0.25, rng=np.random.default_rng(0))
    x = ag.tensor(np.ones((200, 200), dtype=np.float32))
    y = drop(x).data
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    assert drop.eval()(x) is x
    assert nn.Dropout(0.0)(x) is x
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def _attention_reference(x, attn):
    """GPT-2 attention written out in NumPy, one head at a time."""
    B, T, C = x.shape
    H = attn.n_head
    hd = C // H
    qkv = x @ attn.c_attn.weight.data + attn.c_attn.bias.data
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    out = np.zeros_like(x)
    causal = np.tril(np.ones((T, T), dtype=bool))
    for h in range(H):
        s = slice(h * hd, (h + 1) * hd)
        scores = q[..., s] @ np.swapaxes(k[..., s], -1, -2) / np.sqrt(hd)
        scores = np.where(causal, scores, -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        out[..., s] = w @ v[..., s]
    return out @ attn.c_proj.weight.data + attn.c_proj.bias.data


def test_causal_self_attention_matches_numpy():
    rng = np.random.default_rng(0)
    attn = nn.CausalSelfAttention(12, 3, dtype=np.float64, rng=rng)
    for p in attn.parameters():  # give the biases (zero at init) something to do
        p.data[...] = rng.standard_normal(p.shape) * 0.3
    x = rng.standard_normal((2, 5, 12))
    np.testing.assert_allclose(attn(x).data, _attention_reference(x, attn), rtol=1e-10,
                               atol=1e-12)


def test_causal_self_attention_is_causal_and_checks_its_gradient():
    rng = np.random.default_rng(1)
    attn = nn.CausalSelfAttention(8, 2, bias=False, dtype=np.float64, rng=rng)
    assert [n for n, _ in attn.named_parameters()] == ["c_attn.weight", "c_proj.weight"]
    x = rng.standard_normal((1, 6, 8))
    x2 = x.copy()
    x2[:, 4:] += 1.0  # change the future
    np.testing.assert_array_equal(attn(x).data[:, :4], attn(x2).data[:, :4])
    xt = ag.tensor(x, requires_grad=True)
    attn(xt)[:, 2].sum().backward()
    assert not xt.grad[:, 3:].any()  # no gradient flows from the past to the future
    gradcheck(attn, x)
    with pytest.raises(ValueError):
        nn.CausalSelfAttention(10, 3)


def test_attention_dropout_draws_from_the_modules_rng():
    """Two blocks built from equally seeded generators train identically: the rng drives the
    attention-weight dropout too (it used to be ignored there, so the masks differed)."""
    x = np.random.default_rng(0).standard_normal((2, 4, 8))
    a, b = (nn.CausalSelfAttention(8, 2, dropout=0.5, dtype=np.float64,
                                   rng=np.random.default_rng(5)) for _ in range(2))
    b.resid_dropout.p = a.resid_dropout.p = 0.0  # only the attention dropout is left random
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert abs(a.c_attn.weight.data.std() - 0.02) < 0.005  # GPT-2's init, asked for explicitly


def test_attention_dropout_only_in_training():
    attn = nn.CausalSelfAttention(8, 2, dropout=0.5, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 4, 8))
    attn.eval()
    np.testing.assert_array_equal(attn(x).data, attn(x).data)
    attn.train()
    assert not np.array_equal(attn(x).data, attn(x).data)


def test_deepcopy_gives_an_independent_model():
    # e.g. the frozen reference model of DPO, or an EMA copy
    import copy

    model = Tiny(n_layer=1)
    clone = copy.deepcopy(model)
    assert [n for n, _ in clone.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert all(type(p) is nn.Parameter for p in clone.parameters())
    clone.wte.weight.data[...] = 0
    assert model.wte.weight.data.any()


@pytest.mark.gpu
def test_modules_on_the_gpu_match_the_cpu():
    from autograd.backend import asnumpy

    model = Tiny(n_layer=1, dtype=np.float32).eval()
    ids = np.array([[1, 2, 3, 4]])
    expected = model(ids).data
    model.to("cuda")
    assert all(p.device == "cuda" for p in model.parameters())
    out = model(ag.tensor(ids, device="cuda")).data  # inputs go to the device too
    np.testing.assert_allclose(asnumpy(out), expected, rtol=1e-4, atol=1e-5)
    model.load_state_dict({k: asnumpy(v) for k, v in model.state_dict().items()})  # host arrays
    model.to("cpu")
    np.testing.assert_allclose(model(ids).data, expected, rtol=1e-4, atol=1e-5)
