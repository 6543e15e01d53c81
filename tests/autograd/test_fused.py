"""Fused ops against the same computation composed from primitive ops (values and gradients),
stability on extreme inputs, and a whole transformer block gradchecked in float64."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd as ag
from autograd import functional as F
from autograd.testing import gradcheck
from autograd.testing import strategies as ags

rng = np.random.default_rng(0)


def same_values_and_grads(fused, composed, *arrays, rtol=1e-9):
    """Run both on fresh leaves with one random cotangent; compare outputs and every grad."""
    results = []
    for fn in (fused, composed):
        leaves = [ag.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
        out = fn(*leaves)
        cot = np.random.default_rng(1).standard_normal(out.shape)
        out.backward(cot)
        results.append((out.data, [t.grad for t in leaves if t.requires_grad]))
    (o1, g1), (o2, g2) = results
    np.testing.assert_allclose(o1, o2, rtol=rtol, atol=1e-12)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def composed_softmax(x, axis=-1):
    e = (x - ag.tensor(x.data.max(axis=axis, keepdims=True))).exp()
    return e / e.sum(axis=axis, keepdims=True)


@given(x=ags.arrays(ags.shapes(min_dims=1)))
def test_softmax_and_log_softmax_match_composition(x):
    same_values_and_grads(F.softmax, composed_softmax, x)
    same_values_and_grads(F.log_softmax, lambda t: t - t.logsumexp(axis=-1, keepdims=True), x)


@given(x=ags.arrays(ags.shapes(min_dims=1, min_side=2)), data=st.data())
def test_layer_norm_and_rms_norm_match_composition(x, data):
    gamma, beta = (data.draw(ags.arrays(x.shape[-1:])) for _ in range(2))

    def composed_ln(t, g, b):
        mu = t.mean(axis=-1, keepdims=True)
        return (t - mu) / (t.var(axis=-1, keepdims=True) + 1e-5).sqrt() * g + b

    def composed_rms(t, g):
        return t / ((t * t).mean(axis=-1, keepdims=True) + 1e-6).sqrt() * g

    same_values_and_grads(lambda t, g, b: F.layer_norm(t, g, b), composed_ln, x, gamma, beta)
    same_values_and_grads(lambda t, g: F.rms_norm(t, g), composed_rms, x, gamma)


def test_linear_swiglu_and_embedding_match_composition():
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    same_values_and_grads(F.linear, lambda x, w, b: x @ w + b, x, w, b)
    wg, wu = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    same_values_and_grads(F.swiglu, lambda x, g, u: (x @ g).silu() * (x @ u), x, wg, wu)
    ids = np.array([[0, 3, 3], [1, 3, 0]])
    table = rng.standard_normal((4, 2))
    same_values_and_grads(lambda t: F.embedding(ids, t), lambda t: t[ids], table)


def test_cross_entropy_matches_composition_with_ignored_targets():
    logits = rng.standard_normal((2, 4, 7))
    targets = np.array([[1, -100, 6, 0], [-100, -100, 2, 2]])
    kept = targets != -100

    def composed(l):
        logp = l - l.logsumexp(axis=-1, keepdims=True)
        picked = logp.reshape(-1, 7)[np.arange(8), np.where(kept, targets, 0).reshape(-1)]
        return -(picked * kept.reshape(-1).astype(float)).sum() / kept.sum()

    same_values_and_grads(lambda l: F.cross_entropy(l, targets), composed, logits)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_composition(causal):
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    pad = np.array([True, True, True, False, True])  # a padding mask over keys

    def composed(q, k, v):
        s = q @ k.swapaxes(-1, -2) / np.sqrt(4)
        keep = np.broadcast_to(pad, (5, 5))
        if causal:
            keep = keep & np.tril(np.ones((5, 5), dtype=bool))
        return F.softmax(s, axis=-1, mask=keep) @ v

    same_values_and_grads(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, causal=causal, mask=pad), composed, q, k, v)


def test_huge_logits_give_finite_loss_and_gradient():
    logits = ag.tensor(np.array([[1e4, -1e4, 0.0], [5e3, 5e3, -1e4]], dtype=np.float32),
                       requires_grad=True)
    loss = F.cross_entropy(logits, np.array([1, 0]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(logits.grad).all()
    np.testing.assert_allclose(loss.item(), (2e4 + np.log(2)) / 2, rtol=1e-6)
    y = F.softmax(ag.tensor(np.array([1e4, 0.0, -1e4])))
    assert np.isfinite(y.data).all()


def test_fully_masked_rows_give_zeros_not_nan():
    x = ag.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    mask = np.array([[True, False, True], [False, False, False]])
    y = F.softmax(x, mask=mask)
    np.testing.assert_array_equal(y.data[1], 0.0)
    assert y.data[0, 1] == 0.0
    y.backward(rng.standard_normal((2, 3)))
    assert x.grad[0, 1] == 0.0 and (x.grad[1] == 0.0).all()
    z = F.log_softmax(x, mask=mask)
    assert np.isfinite(z.data).all() and z.data[0, 1] == 0.0


def test_attention_future_keys_get_exactly_zero_weight():
    q, k, v = (ag.tensor(rng.standard_normal((1, 1, 4, 2)), requires_grad=True) for _ in range(3))
    out = F.scaled_dot_product_attention(q, k, v)
    (out[..., 0, :]).sum().backward()  # the first query sees only the first key
    assert (k.grad[0, 0, 1:] == 0).all() and (v.grad[0, 0, 1:] == 0).all()


def test_dropout_scales_kept_values_and_is_identity_in_eval():
    x = ag.tensor(np.ones((1000,)), requires_grad=True)
    y = F.dropout(x, 0.25, training=True, rng=np.random.default_rng(0))
    kept = y.data != 0
    assert 0.7 < kept.mean() < 0.8 and np.allclose(y.data[kept], 1 / 0.75)
    assert F.dropout(x, 0.25, training=False) is x


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_masks_keep_each_element_with_probability_one_minus_p(p):
    """The masks come from 16-bit random integers: the keep rate is 1 - p (to 2^-17), within
    the sampling noise of a million draws, and the same generator seed gives the same mask."""
    from autograd.functional import _keep_mask

    n = 1 << 20
    keep = _keep_mask((n,), np, p, np.random.default_rng(7))
    assert keep.dtype == bool and keep.shape == (n,)
    assert abs(keep.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_equal(keep, _keep_mask((n,), np, p, np.random.default_rng(7)))
    halves = keep.reshape(2, -1).mean(axis=1)  # no visible pattern between the two halves
    assert abs(halves[0] - halves[1]) < 10 * np.sqrt(p * (1 - p) / n)


def test_attention_dropout_mask_is_laid_out_keys_by_queries():
    """(B, H, T, S) as the ops expect it, stored (B, H, S, T): the kernels keep their scores keys
    by queries and read the mask's tiles contiguously."""
    from autograd.functional import _attention_keep_mask

    keep = _attention_keep_mask((2, 3), 5, 7, np, 0.3, np.random.default_rng(0))
    assert keep.shape == (2, 3, 5, 7)
    assert np.swapaxes(keep, -1, -2).flags.c_contiguous


def test_attention_with_dropout_gradchecks_for_a_fixed_mask():
    q, k, v = (rng.standard_normal((1, 2, 3, 2)) for _ in range(3))
    gradcheck(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, dropout_p=0.3, rng=np.random.default_rng(5)), q, k, v)


@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_qkv_attention_matches_split_heads_and_attention(dropout_p, monkeypatch):
    """The fused q/k/v-split attention against splitting, reshaping, attention and merging, with
    query tiles of 2 rows (4 tiles over T = 7) and the same dropout mask drawn for both."""
    from autograd.ops import causal_attention

    monkeypatch.setattr(causal_attention, "_QUERY_TILE", 2)
    B, T, H, d = 2, 7, 3, 2
    C = H * d
    qkv = rng.standard_normal((B, T, 3 * C))

    def composed(qkv):
        q, k, v = (t.reshape(B, T, H, d).transpose(0, 2, 1, 3) for t in qkv.split(3, axis=-1))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p,
                                           rng=np.random.default_rng(3))
        return y.transpose(0, 2, 1, 3).reshape(B, T, C)

    same_values_and_grads(lambda t: F.qkv_attention(t, H, dropout_p, np.random.default_rng(3)),
                          composed, qkv)
    gradcheck(lambda t: F.qkv_attention(t, H, dropout_p, np.random.default_rng(3)), qkv)


def test_causal_attention_with_dropout_gradchecks_over_several_tiles(monkeypatch):
    from autograd.ops import causal_attention

    monkeypatch.setattr(causal_attention, "_QUERY_TILE", 2)
    q = rng.standard_normal((2, 5, 2))
    k, v = (rng.standard_normal((2, 6, 2)) for _ in range(2))  # one cached key: S = T + 1
    gradcheck(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, dropout_p=0.3, rng=np.random.default_rng(5)), q, k, v)


def transformer_block(x, ln1_g, ln1_b, w_attn, b_attn, w_proj, b_proj, ln2_g, ln2_b, w_fc, b_fc,
                      w_out, b_out, n_head=2):
    B, T, C = x.shape
    h = F.layer_norm(x, ln1_g, ln1_b)
    qkv = F.linear(h, w_attn, b_attn)
    q, k, v = (t.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)
               for t in qkv.split(3, axis=-1))
    y = F.scaled_dot_product_attention(q, k, v).transpose(0, 2, 1, 3).reshape(B, T, C)
    x = x + F.linear(y, w_proj, b_proj)
    h = F.gelu(F.linear(F.layer_norm(x, ln2_g, ln2_b), w_fc, b_fc))
    return x + F.linear(h, w_out, b_out)


def test_a_whole_transformer_block_gradchecks_in_float64():
    C = 4
    params = [rng.standard_normal((2, 3, C)),
              1 + 0.1 * rng.standard_normal(C), 0.1 * rng.standard_normal(C),
              0.5 * rng.standard_normal((C, 3 * C)), 0.1 * rng.standard_normal(3 * C),
              0.5 * rng.standard_normal((C, C)), 0.1 * rng.standard_normal(C),
              1 + 0.1 * rng.standard_normal(C), 0.1 * rng.standard_normal(C),
              0.5 * rng.standard_normal((C, 4 * C)), 0.1 * rng.standard_normal(4 * C),
              0.5 * rng.standard_normal((4 * C, C)), 0.1 * rng.standard_normal(C)]
    targets = np.array([[0, 1, 2], [3, 2, 1]])
    assert gradcheck(lambda *p: F.cross_entropy(transformer_block(*p), targets), *params)
