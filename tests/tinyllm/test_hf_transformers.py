"""Hugging Face import/export against `transformers` itself (skipped when torch or transformers
is absent): a small random GPT2LMHeadModel and LlamaForCausalLM, saved with save_pretrained and
imported, give our model the same logits and our tokenizer the same ids; an export loads with
from_pretrained without a missing/unexpected-weight warning and decodes greedily the same."""

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import tinyllm  # noqa: E402
from tests.tinyllm.hf_helpers import PROMPT, assert_same_weights, small_tokenizer  # noqa: E402
from tinyllm.hf import export_hf, import_hf  # noqa: E402
from tinyllm.hf.files import open_safetensors, write_safetensors  # noqa: E402
from tinyllm.hf.tokenizer import load_tokenizer_json  # noqa: E402

LOAD_PROBLEMS = ("missing", "unexpected", "newly initialized", "not initialized", "not used")


def _perturb(model, seed):
    """Random biases and norm gains too (the init's zeros and ones would hide a misplaced one)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def hf_gpt2(folder, tok):
    config = transformers.GPT2Config(vocab_size=tok.vocab_size, n_positions=32, n_embd=32,
                                     n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    model = _perturb(transformers.GPT2LMHeadModel(config), 1)
    model.save_pretrained(folder)
    tok.save_gpt2_files(folder / "vocab.json", folder / "merges.txt")
    return model


def hf_llama(folder, tok):
    config = transformers.LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    model = _perturb(transformers.LlamaForCausalLM(config), 2)
    model.save_pretrained(folder)
    tok.save_hf(folder / "tokenizer.json")
    return model


MODELS = {"gpt2": (hf_gpt2, "gpt2"), "llama": (hf_llama, "gpt4")}


@pytest.fixture(scope="module", params=sorted(MODELS))
def imported(request, tmp_path_factory):
    make, pattern = MODELS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    reference = make(root / "hf", small_tokenizer(pattern))
    import_hf(root / "hf", root / "run")
    return root, reference


def torch_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits.numpy()


def assert_close(ours, theirs):
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


def test_imported_model_gives_the_same_logits_and_token_ids(imported):
    root, reference = imported
    model, tok = tinyllm.load(root / "run")
    ids = tok.encode(PROMPT)
    assert ids == transformers.AutoTokenizer.from_pretrained(root / "hf")(PROMPT)["input_ids"]
    assert_close(model(np.array([ids]))[0].data, torch_logits(reference, ids))


def test_tokenizer_json_written_by_transformers_reads_the_same(imported, tmp_path):
    """transformers' own tokenizer.json (for GPT-2: a ByteLevel pre-tokenizer with its regex)
    gives the same ids as the files it was made from."""
    root, _ = imported
    transformers.AutoTokenizer.from_pretrained(root / "hf").save_pretrained(tmp_path)
    ids = load_tokenizer_json(tmp_path / "tokenizer.json").encode(PROMPT)
    assert ids == tinyllm.load(root / "run")[1].encode(PROMPT)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def load_with_warnings(folder):
    """from_pretrained, returning the model and transformers' warnings about the weights."""
    handler = _Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    finally:
        logger.removeHandler(handler)
    return model, [m for m in handler.messages if any(p in m.lower() for p in LOAD_PROBLEMS)]


def test_export_loads_cleanly_with_same_logits_and_greedy_tokens(imported):
    root, _ = imported
    export_hf(root / "run", root / "out")
    hf_model, problems = load_with_warnings(root / "out")
    assert problems == []
    model, tok = tinyllm.load(root / "run")
    ids = tok.encode(PROMPT)
    assert transformers.AutoTokenizer.from_pretrained(root / "out")(PROMPT)["input_ids"] == ids
    assert_close(model(np.array([ids]))[0].data, torch_logits(hf_model, ids))
    ours = model.generate(np.array([ids]), 8, temperature=0)[0].tolist()
    with torch.no_grad():
        theirs = hf_model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                                   pad_token_id=0)[0].tolist()
    assert ours == theirs


def test_the_warning_check_can_fail(imported, tmp_path):
    """A file with one tensor missing and one too many is reported (the check above works)."""
    root, _ = imported
    export_hf(root / "run", tmp_path / "out")
    tensors = open_safetensors(tmp_path / "out" / "model.safetensors")
    dropped = sorted(tensors)[0]
    tensors["unexpected.weight"] = tensors.pop(dropped)
    write_safetensors(tmp_path / "out" / "model.safetensors",
                      {n: (a.shape, lambda a=a: a) for n, (_, a) in tensors.items()}, {"format": "pt"})
    assert load_with_warnings(tmp_path / "out")[1]


def test_import_export_import_is_bit_identical(imported, tmp_path):
    root, _ = imported
    export_hf(root / "run", tmp_path / "out")
    original = open_safetensors(root / "hf" / "model.safetensors")
    exported = open_safetensors(tmp_path / "out" / "model.safetensors")
    assert sorted(original) == sorted(exported)
    assert all(np.array_equal(original[n][1], exported[n][1]) for n in original)
    import_hf(tmp_path / "out", tmp_path / "again")
    assert_same_weights(root / "run", tmp_path / "again")
