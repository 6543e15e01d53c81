"""LoRA on a GPT: target selection, frozen base (by hash), merged export, adapter files."""

import numpy as np
import pytest

from autograd import nn, optim
from tinyllm.align import lora
from tinyllm.model import GPT, GPTConfig

CFG = dict(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16)


def _gpt(seed=0, **over):
    return GPT(GPTConfig(**{**CFG, **over}), seed=seed)


def _batch(seed=1, B=4, T=12):
    rng = np.random.default_rng(seed)
    return rng.integers(0, CFG["vocab_size"], (B, T)), rng.integers(0, CFG["vocab_size"], (B, T))


def _train(model, steps=5, lr=1e-2):
    opt = optim.AdamW(lora.trainable_parameters(model), lr=lr, weight_decay=0.0)
    x, y = _batch()
    losses = []
    for _ in range(steps):
        loss = model(x, y)[1]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.data))
    return losses


def test_default_targets_wrap_attention_and_mlp_projections():
    model = _gpt()
    report = lora.apply_lora(model, lora.LoRAConfig(rank=2))
    assert report["lora_layers"] == [f"transformer.h.{i}.{m}" for i in range(2)
                                     for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                               "mlp.c_proj")]
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.endswith(("lora_A", "lora_B")) for n in names)
    per_layer = 2 * (16 + 48) + 2 * (16 + 16) + 2 * (16 + 64) + 2 * (64 + 16)
    assert report["trainable_parameters"] == 2 * per_layer
    assert report["trainable_fraction"] == pytest.approx(
        2 * per_layer / report["total_parameters"])


def test_patterns_choose_layers():
    model = _gpt()
    assert lora.find_targets(model, ["attn.c_proj"]) == ["transformer.h.0.attn.c_proj",
                                                          "transformer.h.1.attn.c_proj"]
    assert lora.find_targets(model, ["transformer.h.1.*"]) == [
        "transformer.h.1.attn.c_attn", "transformer.h.1.attn.c_proj", "transformer.h.1.mlp.c_fc",
        "transformer.h.1.mlp.c_proj"]


def test_a_pattern_matching_nothing_lists_the_module_names():
    with pytest.raises(lora.LoRAError) as err:
        lora.apply_lora(_gpt(), lora.LoRAConfig(rank=2, targets="c_attn,q_proj"))
    msg = str(err.value)
    assert "'q_proj' matches no Linear layer" in msg
    assert "transformer.h.N.attn.c_attn" in msg and "transformer.h.N.mlp.c_fc" in msg
    assert "(N = 0..1)" in msg


def test_bad_settings_are_refused():
    with pytest.raises(lora.LoRAError, match="--lora-rank"):
        lora.LoRAConfig(rank=0)
    with pytest.raises(lora.LoRAError, match="--lora-dropout"):
        lora.LoRAConfig(rank=2, dropout=1.5)
    with pytest.raises(lora.LoRAError, match="SwiGLU"):
        lora.apply_lora(_gpt(mlp="swiglu"), lora.LoRAConfig(rank=2))


def test_training_moves_adapters_only_and_the_base_stays_bit_identical():
    model = _gpt()
    lora.apply_lora(model, lora.LoRAConfig(rank=4, alpha=8))
    before = lora.weights_hash(lora.base_state_dict(model))
    adapters = {k: v.copy() for k, v in lora.adapter_state_dict(model).items()}
    losses = _train(model)
    assert losses[-1] < losses[0]
    assert lora.weights_hash(lora.base_state_dict(model)) == before
    after = lora.adapter_state_dict(model)
    assert all(not np.array_equal(after[k], adapters[k]) for k in adapters)


def test_export_is_a_plain_gpt_with_the_same_outputs():
    model = _gpt()
    lora.apply_lora(model, lora.LoRAConfig(rank=4, alpha=8))
    _train(model)
    model.eval()
    x, _ = _batch(2)
    adapted = model(x)[0].data
    plain = _gpt(seed=5)  # other weights, overwritten by the load
    plain.load_state_dict(lora.export_state_dict(model), strict=True)
    plain.eval()
    np.testing.assert_allclose(plain(x)[0].data, adapted, rtol=1e-4, atol=1e-5)
    lora.merge_lora(model)
    assert not nn.lora_layers(model)
    assert set(model.state_dict()) == set(plain.state_dict())
    np.testing.assert_allclose(model(x)[0].data, adapted, rtol=1e-4, atol=1e-5)


def test_disabled_adapters_give_the_base_model():
    base = _gpt()
    model = _gpt()
    lora.apply_lora(model, lora.LoRAConfig(rank=4))
    _train(model)
    base.eval(), model.eval()
    x, _ = _batch(3)
    with nn.disable_adapters(model):
        np.testing.assert_array_equal(model(x)[0].data, base(x)[0].data)
    assert not np.allclose(model(x)[0].data, base(x)[0].data)


def test_adapter_file_round_trip_and_mismatch_refusal(tmp_path):
    model = _gpt()
    base_hash = lora.weights_hash(model.state_dict())
    cfg = lora.LoRAConfig(rank=4, alpha=8, targets=("c_attn", "mlp.c_proj"))
    lora.apply_lora(model, cfg)
    _train(model)
    model.eval()
    x, _ = _batch(4)
    path = tmp_path / "adapter.safetensors"
    lora.save_adapter(path, model, cfg, base_hash)
    assert path.stat().st_size < 20_000  # A and B only, not the base

    fresh = _gpt()
    got = lora.load_adapter(path, fresh)
    assert got == cfg
    fresh.eval()
    np.testing.assert_array_equal(fresh(x)[0].data, model(x)[0].data)

    with pytest.raises(lora.LoRAError, match="different base model"):
        lora.load_adapter(path, _gpt(seed=1))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(lora.LoRAError, match="junk.safetensors"):
        lora.load_adapter(tmp_path / "junk.safetensors", _gpt())


def test_new_token_rows_train_and_export_as_one_table():
    model = _gpt()
    old = model.transformer.wte.weight.data.copy()
    lora.apply_lora(model, lora.LoRAConfig(rank=2, new_token_rows=3))
    losses = _train(model)
    assert losses[-1] < losses[0]
    table = lora.export_state_dict(model)["transformer.wte.weight"]
    assert table.shape == old.shape
    np.testing.assert_array_equal(table[:-3], old[:-3])  # the frozen rows did not move
    assert not np.array_equal(table[-3:], old[-3:])
    assert "transformer.wte.rows" in lora.adapter_state_dict(model)


def test_prepare_lora_loads_the_base_and_trains_the_new_token_rows(tmp_path):
    from tests.tinyllm.test_dpo import _make_base
    from tinyllm.align.lora_runs import prepare_lora
    from tinyllm.align.sft import load_run
    from tinyllm.align.vocab import prepare_chat_vocab

    base_dir = _make_base(tmp_path / "base")
    base, tok, _ = load_run(base_dir)
    prepare_chat_vocab(tok, base)  # the grown base, as fine-tuning makes it
    model = GPT(base.config, seed=7)  # a resumed run's model: random weights
    report = prepare_lora(model, {"rank": 2, "alpha": 4}, base_dir, log=lambda m: None)
    assert model.lora_config.new_token_rows == 4
    exported = lora.export_state_dict(model)
    for name, value in base.state_dict().items():
        np.testing.assert_array_equal(exported[name], value)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "transformer.wte.rows" in trainable
    assert report["trainable_fraction"] < 0.2
    with pytest.raises(lora.LoRAError, match="vocabulary"):
        prepare_lora(_gpt(), {"rank": 2}, base_dir, log=lambda m: None)


def _sft_file(path, n=48):
    import json

    rng = np.random.default_rng(0)
    words = ["fox", "dog", "red", "blue", "sky", "sun", "cat", "hat"]
    with open(path, "w") as f:
        for _ in range(n):
            a, b = rng.choice(words, 2)
            f.write(json.dumps({"prompt": f"{a} {b}", "response": f"{b} {a}"}) + "\n")
    return path


def _sft_cfg(base_dir, data, out, **over):
    from tinyllm.align.sft import FinetuneConfig

    return FinetuneConfig(**{"base": str(base_dir), "data": str(data), "out_dir": str(out),
                             "batch_size": 8, "max_steps": 10, "eval_interval": 5, "lr": 1e-2,
                             "eval_examples": 4, "answer_tokens": 4, "progress": False,
                             "lora_rank": 2, **over})


def test_lora_finetune_keeps_the_base_saves_a_plain_run_and_resumes(tmp_path):
    from tests.tinyllm.test_dpo import _make_base
    from tinyllm.align.sft import FineTuner, load_run

    base_dir = _make_base(tmp_path / "base")
    data = _sft_file(tmp_path / "sft.jsonl")
    tuner = FineTuner(_sft_cfg(base_dir, data, tmp_path / "a"), log=lambda m: None)
    frozen = lora.weights_hash(lora.base_state_dict(tuner.model))
    assert all(n.endswith(("lora_A", "lora_B", "wte.rows"))
               for n, p in tuner.model.named_parameters() if p.requires_grad)
    summary = tuner.run()
    assert lora.weights_hash(lora.base_state_dict(tuner.model)) == frozen
    rows = [r for r in map(__import__("json").loads,
                           (tmp_path / "a" / "metrics.jsonl").read_text().splitlines())
            if "val_loss" in r]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]

    plain, _, _ = load_run(tmp_path / "a")  # the run is a plain GPT that every command loads
    assert not nn.lora_layers(plain)
    adapter = tmp_path / "a" / "adapter.safetensors"
    assert adapter.exists() and adapter.stat().st_size < 40_000
    # the adapter alone, put onto the base (chat tokens added), gives the run's weights
    from tinyllm.align.vocab import prepare_chat_vocab

    base, tok, _ = load_run(base_dir)
    prepare_chat_vocab(tok, base)
    lora.load_adapter(adapter, base)
    exported = lora.export_state_dict(base)
    for name, value in plain.state_dict().items():
        np.testing.assert_allclose(exported[name], value, rtol=0, atol=0)

    stopped = FineTuner(_sft_cfg(base_dir, data, tmp_path / "b"), log=lambda m: None)
    stopped.run(stop_at=5)
    again = FineTuner(_sft_cfg(base_dir, data, tmp_path / "b"), resume=True,
                      log=lambda m: None).run()
    assert again["val_loss"] == summary["val_loss"]
    resumed, _, _ = load_run(tmp_path / "b")
    assert lora.weights_hash(resumed.state_dict()) == lora.weights_hash(plain.state_dict())


def test_train_also_unfreezes_named_parameters_and_saves_them_with_the_adapter(tmp_path):
    model = _gpt()
    base_hash = lora.weights_hash(model.state_dict())
    cfg = lora.LoRAConfig(rank=2, train_also="wpe,ln_f")
    lora.apply_lora(model, cfg)
    assert model.lora_extra == ["transformer.wpe.weight", "transformer.ln_f.weight",
                                "transformer.ln_f.bias"]
    frozen = lora.weights_hash(lora.base_state_dict(model))
    _train(model)
    assert lora.weights_hash(lora.base_state_dict(model)) == frozen
    path = tmp_path / "a.safetensors"
    lora.save_adapter(path, model, cfg, base_hash)
    fresh = _gpt()
    assert lora.load_adapter(path, fresh).train_also == ("wpe", "ln_f")
    x, _ = _batch(5)
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(fresh(x)[0].data, model(x)[0].data)
    with pytest.raises(lora.LoRAError, match="'ln_9' matches no parameter"):
        lora.apply_lora(_gpt(), lora.LoRAConfig(rank=2, train_also="ln_9"))
