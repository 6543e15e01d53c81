"""The fast ops equal their plain reference implementations (autograd/ops/reference.py).

Random float64 inputs and a random upstream gradient (never all ones), at a small size and at
a size that takes several cache blocks, so the blocked code paths are compared too (small
hypothesis inputs never reach them)."""

import io

import numpy as np
import pytest

from autograd import Tensor, nn
from autograd import functional as F
from autograd.backend import BLOCK_ELEMENTS, flat_blocks
from autograd.debug import explain
from autograd.ops import reference as ref
from autograd.ops.attention import _BLOCK_BYTES
from autograd.optim import AdamW

RTOL, ATOL = 1e-10, 1e-12


def _t(a, grad=True):
    return Tensor(a, requires_grad=grad)


@pytest.mark.parametrize("n", [37, 3 * BLOCK_ELEMENTS + 11])
def test_gelu(n):
    rng = np.random.default_rng(n)
    a, g = rng.normal(size=n) * 3, rng.normal(size=n)
    if n > BLOCK_ELEMENTS:
        assert len(flat_blocks(n, np)) > 1
    x = _t(a)
    out = F.gelu(x)
    out.backward(g)
    np.testing.assert_allclose(out.data, ref.gelu(a), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(x.grad, ref.gelu_vjp(a, g), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("rows,width", [(5, 7), (BLOCK_ELEMENTS // 48 * 3 + 5, 48)])
def test_layer_norm(rows, width):
    rng = np.random.default_rng(rows)
    x, gamma, beta = rng.normal(size=(rows, width)), rng.normal(size=width), rng.normal(size=width)
    g = rng.normal(size=(rows, width))
    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    out = F.layer_norm(xt, gt, bt)
    out.backward(g)
    np.testing.assert_allclose(out.data, ref.layer_norm(x, gamma, beta), rtol=RTOL, atol=ATOL)
    dx, dgamma, dbeta = ref.layer_norm_vjp(x, gamma, g)
    for fast, plain in ((xt.grad, dx), (gt.grad, dgamma), (bt.grad, dbeta)):
        np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shape", [(3, 5), (64, 2000)])
def test_softmax(shape):
    rng = np.random.default_rng(shape[0])
    x, g = rng.normal(size=shape) * 4, rng.normal(size=shape)
    xt = _t(x)
    y = F.softmax(xt, axis=-1)
    y.backward(g)
    np.testing.assert_allclose(y.data, ref.softmax(x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(xt.grad, ref.softmax_vjp(x, g), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("rows,vocab", [(4, 6), (300, 700)])
def test_cross_entropy(rows, vocab):
    rng = np.random.default_rng(rows)
    logits, targets = rng.normal(size=(rows, vocab)) * 3, rng.integers(0, vocab, size=rows)
    g = rng.normal()
    lt = _t(logits)
    loss = F.cross_entropy(lt, Tensor(targets))
    loss.backward(np.array(g))
    np.testing.assert_allclose(loss.data, ref.cross_entropy(logits, targets), rtol=RTOL)
    np.testing.assert_allclose(lt.grad, ref.cross_entropy_vjp(logits, targets, g),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("B,H,T,d", [(1, 2, 5, 3), (2, 40, 64, 8)])
def test_causal_attention(B, H, T, d):
    if T == 64:  # several (batch, head) blocks: each block holds _BLOCK_BYTES of scores
        assert B * H > _BLOCK_BYTES // (T * T * 8)
    rng = np.random.default_rng(T)
    q, k, v = (rng.normal(size=(B, H, T, d)) for _ in range(3))
    g = rng.normal(size=(B, H, T, d))
    qt, kt, vt = _t(q), _t(k), _t(v)
    out = F.scaled_dot_product_attention(qt, kt, vt, causal=True)
    out.backward(g)
    np.testing.assert_allclose(out.data, ref.attention(q, k, v), rtol=RTOL, atol=ATOL)
    for fast, plain in zip((qt.grad, kt.grad, vt.grad), ref.attention_vjp(q, k, v, g)):
        np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("n", [9, 2 * BLOCK_ELEMENTS + 3])
def test_adamw_step(n):
    rng = np.random.default_rng(n)
    p0 = rng.normal(size=n)
    param = nn.Parameter(p0.copy())
    opt = AdamW([param], lr=0.01, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.1)
    p, m, v = p0.copy(), np.zeros(n), np.zeros(n)
    for t in (1, 2, 3):
        g = rng.normal(size=n)
        param.grad = g.copy()
        opt.step()
        p, m, v = ref.adamw_step(p, g, m, v, t, lr=0.01, betas=(0.8, 0.95), eps=1e-8,
                                 weight_decay=0.1)
        np.testing.assert_allclose(param.data, p, rtol=1e-12, atol=1e-14)


def test_explain_source_shows_the_reference_next_to_the_fast_code():
    out = io.StringIO()
    explain("layer_norm", source=True, file=out)
    text = out.getvalue()
    assert "def layer_norm(x, gamma, beta" in text and "def layer_norm_vjp" in text
    assert text.index("def layer_norm_vjp") < text.index("def forward(ctx, x, gamma")
    out = io.StringIO()
    explain("adamw", source=True, file=out)
    assert "m_hat = m / (1 - b1**t)" in out.getvalue()
    with pytest.raises(ValueError, match="no op named"):
        explain("no_such_thing")
