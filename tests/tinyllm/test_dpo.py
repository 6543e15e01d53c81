"""DPO: the loss (ln 2 at the start, gradient against finite differences), sequence log-probs,
preference data errors, and the run (improves, resumes exactly, LoRA keeps the base)."""

import json
import math

import numpy as np
import pytest

import autograd as ag
from autograd.testing import gradcheck
from tinyllm import checkpoint as ckpt
from tinyllm.align import lora
from tinyllm.align.dpo import (
    IGNORE,
    dpo_loss,
    pair_logprobs,
    reference_logprobs,
    reward_metrics,
    sequence_logprobs,
)
from tinyllm.align.dpo_train import DPOConfig, DPOTrainer
from tinyllm.align.preference_data import Pair, PreferenceDataError, read_pairs, tokenize_pairs
from tinyllm.align.sft import load_run
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import BPETokenizer

TEXT = ("The quick brown fox jumps over the lazy dog. Is it red? yes. Is it blue? no. "
        "Hello, world! ") * 20
WORDS = ["fox", "dog", "red", "blue", "sky", "sun", "tree", "cat", "hat", "box", "map", "cup"]


# ---- the loss --------------------------------------------------------------------------------
def test_loss_is_ln2_exactly_when_policy_equals_reference():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        c, r = rng.standard_normal(8).astype(dtype) * 5, rng.standard_normal(8).astype(dtype)
        loss, chosen, rejected = dpo_loss(ag.tensor(c), ag.tensor(r), c, r, beta=0.1)
        assert loss.data == dtype(math.log(2))
        assert not chosen.any() and not rejected.any()


def test_loss_matches_the_formula_and_is_stable_for_large_margins():
    rng = np.random.default_rng(1)
    c, r, rc, rr = (rng.standard_normal(6) * 20 for _ in range(4))
    beta = 0.3
    z = beta * ((c - rc) - (r - rr))
    loss, chosen, rejected = dpo_loss(ag.tensor(c), ag.tensor(r), rc, rr, beta)
    np.testing.assert_allclose(loss.data, np.mean(np.logaddexp(0, -z)), rtol=1e-12)
    np.testing.assert_allclose(chosen - rejected, z, rtol=1e-12)
    big = dpo_loss(ag.tensor(np.array([1e4, -1e4])), ag.tensor(np.zeros(2)), np.zeros(2),
                   np.zeros(2), 1.0)[0]
    assert np.isfinite(big.data) and big.data == pytest.approx(1e4 / 2)


def test_loss_gradient_against_finite_differences_float64():
    rng = np.random.default_rng(2)
    rc, rr = rng.standard_normal(5) * 3, rng.standard_normal(5) * 3

    def fn(c, r):
        return dpo_loss(c, r, rc, rr, beta=0.7)[0]

    gradcheck(fn, rng.standard_normal(5) * 3, rng.standard_normal(5) * 3, seed=3)
    # and the closed form: d loss / d logp_c = -beta sigmoid(-z) / B
    c, r = ag.tensor(rng.standard_normal(5), requires_grad=True), ag.tensor(rng.standard_normal(5))
    dpo_loss(c, r, rc, rr, beta=0.7)[0].backward()
    z = 0.7 * ((c.data - rc) - (r.data - rr))
    np.testing.assert_allclose(c.grad, -0.7 / (1 + np.exp(z)) / 5, rtol=1e-10)


def test_sft_term_is_the_chosen_nll_per_token_and_its_gradient_checks():
    from tinyllm.align.dpo import chosen_nll

    items = [(None, np.array([0, 0, 1, 1, 1]), None, None), (None, np.array([0, 1, 1]), None,
                                                            None)]
    got = chosen_nll(ag.tensor(np.array([-4.0, -2.0])), items).data
    assert got == pytest.approx((4 / 3 + 2 / 2) / 2)
    gradcheck(lambda c: chosen_nll(c, items), np.array([-4.0, -2.0]), seed=4)


def test_reward_metrics():
    m = reward_metrics([1.0, 0.0, 2.0, 0.5], [0.0, 0.0, 3.0, -0.5])
    assert m == {"reward_accuracy": 0.5, "reward_margin": 0.25, "chosen_reward": 0.875,
                 "rejected_reward": 0.625}


# ---- sequence log-probs --------------------------------------------------------------------
def _tiny_gpt(vocab=30, dtype="float64"):
    m = GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_embd=8,
                      dtype=dtype))
    return m.eval()


def test_sequence_logprobs_sum_the_scored_tokens_only():
    model = _tiny_gpt()
    rng = np.random.default_rng(4)
    x = rng.integers(0, 30, (3, 7))
    y = rng.integers(0, 30, (3, 7))
    y[0, :3] = y[1, 5:] = y[2, :] = IGNORE
    y[2, 6] = 4
    got = sequence_logprobs(model, x, y).data
    logits = model(x)[0].data
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = [sum(logp[b, t, y[b, t]] for t in range(7) if y[b, t] != IGNORE) for b in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_prompt_and_padding_tokens_get_exactly_zero_gradient_from_the_scores():
    model = _tiny_gpt()
    x = np.random.default_rng(5).integers(0, 30, (2, 6))
    y = np.full((2, 6), IGNORE)
    y[:, 3:] = x[:, 3:]
    logits = model(x)[0]
    logits.retain_grad()
    # sequence_logprobs calls model(x)[0]: hand it these logits, to look at their gradient
    out = sequence_logprobs(lambda _x: (logits, None), x, y)
    out.backward(np.array([0.7, -1.3]))
    assert not logits.grad[:, :3].any() and logits.grad[:, 3:].any()


# ---- data ------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ('{"prompt": "a", "chosen": "b"}', "missing field 'rejected'"),
    ('{"chosen": "b", "rejected": "c"}', "missing field 'prompt'"),
    ('{"prompt": "a", "chosen": 3, "rejected": "c"}', "'chosen' must be a string"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],'
     ' "chosen": "b", "rejected": "c"}', "must end with a user turn"),
    ('{"messages": [{"role": "robot", "content": "a"}], "chosen": "b", "rejected": "c"}',
     "role 'robot'"),
    ("[1, 2]", "expected a JSON object"),
])
def test_a_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "ok", "chosen": "a", "rejected": "b"}\n\n' + line + "\n")
    with pytest.raises(PreferenceDataError) as err:
        read_pairs(path)
    assert str(err.value).startswith(f"{path}:3: ") and message in str(err.value)


def test_both_forms_read(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "hi", "system": "be brief", "chosen": "yes", "rejected": "no"}\n'
        '{"messages": [{"role": "user", "content": "hi"}], '
        '"chosen": {"role": "assistant", "content": "yes"}, "rejected": "no"}\n')
    a, b = read_pairs(path)
    assert a.prompt == [{"role": "system", "content": "be brief"},
                        {"role": "user", "content": "hi"}]
    assert b.prompt == [{"role": "user", "content": "hi"}] and b.chosen == "yes"


# ---- the run ---------------------------------------------------------------------------------
def _make_base(folder):
    """A tiny pre-trained-shaped run folder (random weights), without chat tokens."""
    tok = BPETokenizer.train(TEXT, vocab_size=300, special_tokens=["<|endoftext|>"])
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg, seed=0)
    folder.mkdir()
    ckpt.write_json(folder / "config.json", {"model": cfg.to_dict()})
    tok.save(folder / "tokenizer.json")
    from autograd import optim

    ckpt.save_checkpoint(folder, model, optim.AdamW(model.parameters()), {"step": 0})
    return folder


def _pairs_file(path, n=40):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for _ in range(n):
            prompt = " ".join(rng.choice(WORDS, 3))
            f.write(json.dumps({"prompt": prompt, "chosen": "yes", "rejected": "no"}) + "\n")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    return _make_base(root / "base"), _pairs_file(root / "prefs.jsonl")


def _cfg(base, out, **over):
    run, data = base
    return DPOConfig(**{"base_run": str(run), "data": str(data), "out_dir": str(out),
                        "lr": 3e-3, "max_steps": 12, "eval_interval": 6, "batch_size": 4,
                        "sample_pairs": 2, "progress": False, **over})


def test_policy_equals_reference_at_step_0_to_the_last_bit(base):
    model, tok, _ = load_run(base[0])
    from tinyllm.align.vocab import prepare_chat_vocab

    tok, _ = prepare_chat_vocab(tok, model)
    model.eval()
    items, _, _ = tokenize_pairs([Pair([{"role": "user", "content": w}], "yes", "no")
                                  for w in WORDS[:8]], tok, 32)
    pad = tok.special_tokens["<|end|>"]
    ref_c, ref_r = reference_logprobs(model, items, pad, 8)
    logp_c, logp_r = pair_logprobs(model, items, pad)
    loss, chosen, rejected = dpo_loss(logp_c, logp_r, ref_c, ref_r)
    assert loss.data == np.float32(math.log(2)) and not chosen.any()


def test_a_short_run_improves_reward_accuracy_and_writes_a_run_folder(base, tmp_path):
    summary = DPOTrainer(_cfg(base, tmp_path / "run")).run()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "reward_accuracy" in r]
    # the held-out pairs are one batch, scored as the reference cache was: ln 2 to the bit
    assert evals[0]["step"] == 0 and evals[0]["val_loss"] == float(np.float32(math.log(2)))
    assert evals[0]["reward_accuracy"] == 0.0  # ties are not wins
    assert summary["reward_accuracy"] == 1.0 and summary["val_loss"] < math.log(2)
    assert summary["reward_margin"] > 0
    for name in ("config.json", "tokenizer.json", "summary.json", "reference.safetensors"):
        assert (tmp_path / "run" / name).exists()
    model, tok, _ = load_run(tmp_path / "run")  # a plain GPT run with the chat tokens
    assert "<|assistant|>" in tok.special_tokens


def test_resume_equals_not_stopping(base, tmp_path):
    straight = DPOTrainer(_cfg(base, tmp_path / "a")).run()
    stopped = DPOTrainer(_cfg(base, tmp_path / "b"))
    assert stopped.run(stop_at=5) is None
    resumed = DPOTrainer(_cfg(base, tmp_path / "b"), resume=True)
    assert resumed.step == 5
    again = resumed.run()
    assert again["val_loss"] == straight["val_loss"]
    wa, _, _ = load_run(tmp_path / "a")
    wb, _, _ = load_run(tmp_path / "b")
    assert lora.weights_hash(wa.state_dict()) == lora.weights_hash(wb.state_dict())


def test_lora_dpo_keeps_the_base_and_resumes(base, tmp_path):
    lcfg = lora.LoRAConfig(rank=2, alpha=4).to_dict()
    trainer = DPOTrainer(_cfg(base, tmp_path / "l", lora=lcfg, lr=1e-2, sft_weight=0.5))
    frozen = lora.weights_hash(lora.base_state_dict(trainer.model))
    summary = trainer.run()
    assert lora.weights_hash(lora.base_state_dict(trainer.model)) == frozen
    assert summary["reward_accuracy"] > 0.5 and summary["trainable_fraction"] < 0.2
    adapter = tmp_path / "l" / "adapter.safetensors"
    assert adapter.exists() and adapter.stat().st_size < 60_000
    merged, _, _ = load_run(tmp_path / "l")  # the checkpoint is a plain GPT
    assert not any("lora" in n for n in merged.state_dict())

    stopped = DPOTrainer(_cfg(base, tmp_path / "m", lora=lcfg, lr=1e-2, sft_weight=0.5))
    stopped.run(stop_at=7)
    again = DPOTrainer(_cfg(base, tmp_path / "m", lora=lcfg, lr=1e-2, sft_weight=0.5),
                       resume=True).run()
    assert again["val_loss"] == summary["val_loss"]


def test_cli_bad_line_is_one_error_line(base, tmp_path, capsys):
    from tinyllm.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a"}\n')
    code = main(["dpo", str(base[0]), "--data", str(bad), "--out", str(tmp_path / "o"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0
    assert err == f"tinyllm dpo: error: {bad}:2: missing field 'chosen'"
    code = main(["dpo", str(base[0]), "--data", str(base[1]), "--out", str(tmp_path / "o"),
                 "--lora-rank", "2", "--lora-targets", "q_proj", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "'q_proj' matches no Linear layer" in err and "c_attn" in err
