"""Hugging Face import/export without transformers: names, shapes, config fields, shards, the
refusal of pickles and of settings the GPT lacks, and the CLI."""

import json

import numpy as np
import pytest

import tinyllm
from tests.tinyllm.hf_helpers import PROMPT, assert_same_weights, make_run, run_weights, small_tokenizer
from tinyllm.cli import main
from tinyllm.hf import convert, export_hf, import_hf
from tinyllm.hf.files import bf16_to_f32, open_safetensors, write_safetensors
from tinyllm.model import GPT, GPTConfig, weight_shapes
from tinyllm.safetensors import save_file

LLAMA = dict(pos="rope", mlp="swiglu", norm="rmsnorm", bias=False)
CONFIGS = [{}, dict(bias=False), dict(tie_weights=False), LLAMA, {**LLAMA, "tie_weights": False},
           {**LLAMA, "bias": True}]


@pytest.fixture(scope="module")
def tok():
    return small_tokenizer()


@pytest.mark.parametrize("options", CONFIGS)
def test_weight_shapes_are_the_models_state_dict(options):
    config = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16, **options)
    real = {n: tuple(a.shape) for n, a in GPT(config).state_dict().items()}
    assert weight_shapes(config) == real


@pytest.mark.parametrize("options", CONFIGS)
def test_export_then_import_is_bit_identical(tmp_path, tok, options):
    run = make_run(tmp_path / "run", tok, **options)
    export_hf(run, tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "back")
    before = json.loads((run / "config.json").read_text())["model"]
    after = json.loads((tmp_path / "back" / "config.json").read_text())["model"]
    if options.get("bias") is False and not options.get("pos"):
        # GPT2LMHeadModel always has biases: they come back as zeros, the rest bit-identical
        assert after.pop("bias") and before.pop("bias") is False
        ours, back = run_weights(run), run_weights(tmp_path / "back")
        assert all(np.array_equal(ours[n], back[n]) for n in ours)
        assert all(not back[n].any() for n in set(back) - set(ours)) and len(back) > len(ours)
    else:
        assert_same_weights(run, tmp_path / "back")
    assert after == before


def test_gpt2_export_uses_gpt2_names_shapes_and_config(tmp_path, tok):
    run = make_run(tmp_path / "run", tok, block_size=24)
    export_hf(run, tmp_path / "hf")
    names = {n: a.shape for n, (_, a) in open_safetensors(tmp_path / "hf" / "model.safetensors").items()}
    assert names["transformer.h.1.attn.c_attn.weight"] == (32, 96)  # Conv1D: (in, out)
    assert names["transformer.wpe.weight"] == (24, 32)
    assert "lm_head.weight" not in names  # tied: transformers ties it to wte
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf["architectures"] == ["GPT2LMHeadModel"]
    assert (hf["n_positions"], hf["n_embd"], hf["n_layer"], hf["n_head"]) == (24, 32, 2, 4)
    assert hf["eos_token_id"] == tok.special_tokens["<|endoftext|>"]
    for name in ("generation_config.json", "tokenizer.json", "vocab.json", "merges.txt",
                 "tokenizer_config.json"):
        assert (tmp_path / "hf" / name).exists(), name


def test_llama_export_transposes_and_splits_qkv(tmp_path, tok):
    run = make_run(tmp_path / "run", tok, tie_weights=False, **LLAMA)
    export_hf(run, tmp_path / "hf")
    hf = {n: a for n, (_, a) in open_safetensors(tmp_path / "hf" / "model.safetensors").items()}
    ours = tinyllm.load(run)[0].state_dict()
    c_attn = np.asarray(ours["transformer.h.0.attn.c_attn.weight"])
    assert np.array_equal(hf["model.layers.0.self_attn.k_proj.weight"], c_attn[:, 32:64].T)
    assert np.array_equal(hf["model.layers.0.mlp.up_proj.weight"],
                          np.asarray(ours["transformer.h.0.mlp.c_up.weight"]).T)
    assert "lm_head.weight" in hf
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["intermediate_size"] == hf["model.layers.0.mlp.gate_proj.weight"].shape[0]


def test_sharded_folder_and_bare_openai_names_import(tmp_path, tok):
    run = make_run(tmp_path / "run", tok)
    export_hf(run, tmp_path / "hf")
    tensors = open_safetensors(tmp_path / "hf" / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:7], "model-00002-of-00002.safetensors": names[7:]}
    (tmp_path / "hf" / "model.safetensors").rename(tmp_path / "whole.safetensors")
    weight_map = {}
    for shard, part in shards.items():
        # bare names, as the original OpenAI files have them, plus a mask buffer to be skipped
        recipes = {n.removeprefix("transformer."): (tensors[n][1].shape, lambda n=n: tensors[n][1])
                   for n in part}
        recipes["h.0.attn.bias"] = ((1, 1, 4, 4), lambda: np.tril(np.ones((1, 1, 4, 4))))
        write_safetensors(tmp_path / "hf" / shard, recipes)
        weight_map.update({n: shard for n in recipes})
    (tmp_path / "hf" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    import_hf(tmp_path / "hf", tmp_path / "back")
    assert_same_weights(run, tmp_path / "back")


def test_bfloat16_words_become_float32():
    values = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    words = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact in bfloat16
    assert np.array_equal(bf16_to_f32(words), values)


def test_pickled_weights_are_refused_without_being_opened(tmp_path, tok):
    run = make_run(tmp_path / "run", tok)
    export_hf(run, tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    # a pickle that would run code when loaded: it must not even be read
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch PWNED'\ntR.")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: pickled weights are never loaded.*"
                                         r"save_pretrained"):
        import_hf(tmp_path / "hf", tmp_path / "back")
    assert not (tmp_path / "back").exists()


BASE_GPT2 = {"model_type": "gpt2", "vocab_size": 300, "n_positions": 32, "n_embd": 32,
             "n_layer": 2, "n_head": 4}
BASE_LLAMA = {"model_type": "llama", "vocab_size": 300, "hidden_size": 32, "intermediate_size": 96,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
              "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 5000.0}


def test_config_fields_map_to_gptconfig():
    g = convert.config_from_hf(BASE_GPT2)
    assert (g.block_size, g.n_embd, g.pos, g.bias, g.tie_weights) == (32, 32, "learned", True, True)
    ll = convert.config_from_hf(BASE_LLAMA)
    assert (ll.pos, ll.mlp, ll.norm, ll.bias, ll.tie_weights, ll.rope_base) == (
        "rope", "swiglu", "rmsnorm", False, False, 5000.0)
    assert convert.config_from_hf(convert.config_to_hf(ll, {})) == ll


@pytest.mark.parametrize("base, change, named", [
    (BASE_LLAMA, {"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
    (BASE_LLAMA, {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_type"),
    (BASE_LLAMA, {"num_key_value_heads": 2}, "num_key_value_heads"),
    (BASE_LLAMA, {"hidden_act": "gelu"}, "hidden_act"),
    (BASE_LLAMA, {"intermediate_size": 100}, "intermediate_size"),
    (BASE_LLAMA, {"rms_norm_eps": 1e-5}, "rms_norm_eps"),
    (BASE_LLAMA, {"mlp_bias": True}, "mlp_bias"),
    (BASE_GPT2, {"activation_function": "relu"}, "activation_function"),
    (BASE_GPT2, {"n_inner": 64}, "n_inner"),
    (BASE_GPT2, {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    (BASE_GPT2, {"model_type": "bert", "architectures": ["BertModel"]}, "BertModel"),
])
def test_settings_the_gpt_lacks_are_refused_by_name(base, change, named):
    with pytest.raises(ValueError, match=named):
        convert.config_from_hf({**base, **change})


def test_a_mixed_run_is_refused_on_export(tmp_path, tok):
    run = make_run(tmp_path / "run", tok, pos="rope")
    with pytest.raises(ValueError, match="pos=rope, mlp=gelu"):
        export_hf(run, tmp_path / "hf")


def test_cli_export_import_sample(tmp_path, tok, capsys):
    run = make_run(tmp_path / "run", tok)
    assert main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert main(["import", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    assert main(["sample", str(tmp_path / "back"), "--prompt", PROMPT, "--max-new-tokens", "5"]) == 0
    assert PROMPT in capsys.readouterr().out
    assert main(["import", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 1
    assert main(["import", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "already exists" in err[0] and "no config.json" in err[1]


def test_weights_are_memory_mapped_and_written_one_at_a_time(tmp_path, tok):
    run = make_run(tmp_path / "run", tok)
    export_hf(run, tmp_path / "hf")
    tensors = open_safetensors(tmp_path / "hf" / "model.safetensors")
    wte = tensors["transformer.wte.weight"][1]
    assert isinstance(wte.base, np.memmap) or isinstance(wte.base.base, np.memmap)
    assert not wte.flags.owndata and not wte.flags.writeable  # a read-only view of the file
    made = []

    def recipe(i):
        def make():
            made.append(i)
            return np.full((3,), i, np.float32)
        return (3,), make

    write_safetensors(tmp_path / "t.safetensors", {f"t{i}": recipe(i) for i in range(3)})
    assert made == [0, 1, 2]  # each made only when written (nothing collected beforehand)
    back = open_safetensors(tmp_path / "t.safetensors")
    assert [float(back[f"t{i}"][1][0]) for i in range(3)] == [0.0, 1.0, 2.0]


def test_float16_weights_import_as_float32(tmp_path, tok):
    run = make_run(tmp_path / "run", tok)
    export_hf(run, tmp_path / "hf")
    half = {n: a.astype(np.float16) for n, (_, a) in
            open_safetensors(tmp_path / "hf" / "model.safetensors").items()}
    save_file(half, tmp_path / "hf" / "model.safetensors")
    import_hf(tmp_path / "hf", tmp_path / "back")
    back = run_weights(tmp_path / "back")
    for name, array in half.items():
        assert back[name].dtype == np.float32 and np.array_equal(back[name], array.astype(np.float32))
