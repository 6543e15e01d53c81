"""The GPT's training forward (targets given, logits not requested) goes through the fused
LM head + cross-entropy: same loss and gradients as the composed linear + cross_entropy, in
float64, with ignored targets, tied and untied output weights."""

import numpy as np
import pytest

from tinyllm import GPT, GPTConfig

rng = np.random.default_rng(0)



@pytest.mark.parametrize("tie_weights", [True, False])
def test_gpt_training_forward_uses_it_with_the_same_loss_and_gradients(tie_weights):
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8,
                       dtype="float64", tie_weights=tie_weights)
    idx, targets = rng.integers(0, 11, (3, 8)), rng.integers(0, 11, (3, 8))
    targets[1, :5] = -100
    results = []
    for return_logits in (True, False):
        model = GPT(config, seed=0)
        logits, loss = model(idx, targets, return_logits=return_logits)
        assert (logits is None) != return_logits
        loss.backward()
        results.append((loss.item(), [p.grad for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_b == pytest.approx(loss_a, rel=1e-12)
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-13)
