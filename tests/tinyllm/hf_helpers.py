"""Shared pieces of the test_hf* files: a small tokenizer and a run folder of random weights."""

import numpy as np

from tinyllm import checkpoint as ckpt
from tinyllm.model import GPT, GPTConfig
from tinyllm.safetensors import load_file, save_file
from tinyllm.tokenizer import BPETokenizer

TEXT = ("The quick brown fox jumps over the lazy dog. Hello world, hello there! " * 12
        + "Numbers 123 and 4567; don't stop, we'll see.\n")
PROMPT = "Hello there, the lazy fox! don't 42"


def small_tokenizer(pattern="gpt2"):
    return BPETokenizer.train(TEXT, 300, pattern=pattern, special_tokens=["<|endoftext|>"])


def make_run(folder, tok, seed=0, **model):
    """A run folder (what tinyllm.load reads) holding random weights, biases and norm gains
    included (not the init's zeros and ones, so that a misplaced one shows)."""
    config = GPTConfig(**{"vocab_size": tok.vocab_size, "block_size": 32, "n_layer": 2,
                          "n_head": 4, "n_embd": 32, **model})
    gpt = GPT(config, seed=seed)
    rng = np.random.default_rng(seed + 1)
    weights = {n: (np.asarray(a) + 0.05 * rng.standard_normal(a.shape)).astype(np.float32)
               for n, a in gpt.state_dict().items()}
    (folder / "checkpoint").mkdir(parents=True)
    ckpt.write_json(folder / "config.json", {"model": config.to_dict()})
    tok.save(folder / "tokenizer.json")
    save_file(weights, folder / "checkpoint" / "model.safetensors")
    ckpt.write_json(folder / "checkpoint" / "state.json",
                    {"format": ckpt.FORMAT, "version": ckpt.VERSION, "step": 0})
    return folder


def run_weights(run):
    return load_file(ckpt.checkpoint_dir(run) / "model.safetensors")[0]


def assert_same_weights(a, b):
    wa, wb = run_weights(a), run_weights(b)
    assert sorted(wa) == sorted(wb)
    for name in wa:
        assert wa[name].dtype == wb[name].dtype and np.array_equal(wa[name], wb[name]), name
