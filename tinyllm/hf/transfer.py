"""`import_hf` (HF folder -> run folder) and `export_hf` (run folder -> HF folder).

An imported run is a run like any other: config.json ({"model": ...} plus where it came from),
tokenizer.json, and checkpoint/ with model.safetensors and a state.json at step 0 (no optimizer
moments: `train --init-from`, `finetune`, `sample`, `eval` and `chat` only need the weights).
Both directions write into a temporary folder beside the target and rename it at the end, so an
interrupted import leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from tinyllm import checkpoint as ckpt
from tinyllm.hf import convert
from tinyllm.hf.files import as_float32, open_weights, refuse_pickles, write_safetensors
from tinyllm.hf.tokenizer import eos_token, load_hf_tokenizer, save_hf_tokenizer
from tinyllm.model import GPTConfig, weight_shapes
from tinyllm.safetensors import load_file

_GPT2_BUFFERS = (["attn", "bias"], ["attn", "masked_bias"])  # causal masks old GPT-2 files carry


def _fresh_target(out) -> tuple[Path, Path]:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: already exists and is not empty (choose another --out)")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return out, tmp


def _finish(tmp: Path, out: Path) -> Path:
    if out.exists():
        out.rmdir()  # empty, checked by _fresh_target
    os.replace(tmp, out)
    ckpt.fsync_dir(out.parent)
    return out


def _hf_names_for_gpt2(tensors: dict) -> dict:
    """Accept the bare OpenAI names (`h.0.attn...`, `wte.weight`) beside `transformer.`-prefixed
    ones; drop the attention-mask buffers, which are not weights."""
    named = {}
    for name, value in tensors.items():
        if name.split(".")[-2:] in _GPT2_BUFFERS:
            continue
        if not name.startswith("transformer.") and name != "lm_head.weight":
            name = "transformer." + name
        named[name] = value
    return named


def import_recipes(config: GPTConfig, tensors: dict) -> dict:
    """{our name: (shape, make)} reading HF `tensors` ({name: (dtype code, array)}); refuses
    missing or unexpected tensors and wrong shapes, naming them."""
    if convert.hf_kind(config) == "gpt2":
        tensors = _hf_names_for_gpt2(tensors)
    if config.tie_weights:
        tensors.pop("lm_head.weight", None)  # a tied head saved anyway is the embedding again
    recipes, used = {}, set()
    for name, shape in weight_shapes(config).items():
        sources, how = convert.to_hf_sources(config, name)
        for source in sources:
            if source not in tensors:
                raise ValueError(f"model.safetensors: missing tensor {source!r} (needed for {name})")
        used.update(sources)
        parts = [tensors[s] for s in sources]
        recipes[name] = (shape, lambda parts=parts, how=how:
                         convert.build(how, [as_float32(code, a) for code, a in parts]))
        got = convert.build(how, [np.empty(a.shape, np.bool_) for _, a in parts]).shape
        if got != tuple(shape):
            raise ValueError(f"model.safetensors: {sources[0]!r} has shape {parts[0][1].shape}, "
                             f"which gives {name} {got} instead of {tuple(shape)}")
    extra = sorted(set(tensors) - used)
    if extra:
        raise ValueError(f"model.safetensors: unexpected tensor {extra[0]!r} (and {len(extra) - 1} "
                         "more): the config does not describe these weights")
    return recipes


def import_hf(folder, out) -> Path:
    """Write a run folder at `out` from the HF model folder `folder`; returns `out`."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: not a Hugging Face model folder (no config.json)")
    hf = json.loads((folder / "config.json").read_text())
    config = convert.config_from_hf(hf)
    tensors = open_weights(folder)
    if not tensors:
        refuse_pickles(folder)
    if not config.tie_weights and "lm_head.weight" not in tensors:
        config.tie_weights = True  # tie_word_embeddings false, but the file has no head of its own
    tok = load_hf_tokenizer(folder)
    if tok.vocab_size > config.vocab_size:
        raise ValueError(f"{folder}: the tokenizer has {tok.vocab_size} ids but the model only "
                         f"{config.vocab_size} (vocab_size)")
    recipes = import_recipes(config, tensors)
    out, tmp = _fresh_target(out)
    try:
        ckpt.write_json(tmp / "config.json", {"model": config.to_dict(), "imported_from": {
            "path": str(folder.resolve()), "architecture": hf.get("architectures", [None])[0]}})
        tok.save(tmp / "tokenizer.json")
        (tmp / "checkpoint").mkdir()
        write_safetensors(tmp / "checkpoint" / "model.safetensors", recipes,
                          {"format": ckpt.FORMAT, "step": 0})
        write_safetensors(tmp / "checkpoint" / "optimizer.safetensors", {}, {"format": ckpt.FORMAT})
        ckpt.write_json(tmp / "checkpoint" / "state.json",
                        {"format": ckpt.FORMAT, "version": ckpt.VERSION, "step": 0,
                         "imported": True})
        return _finish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_hf(run, out) -> Path:
    """Write the HF folder `out` (config.json, model.safetensors, generation_config.json,
    tokenizer files) from the run folder `run`; returns `out`."""
    from tinyllm.tokenizer import BPETokenizer

    run = Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no config.json)")
    config = GPTConfig.from_dict(ckpt.read_json(run / "config.json")["model"])
    kind = convert.hf_kind(config)
    weights, _ = load_file(ckpt.checkpoint_dir(run) / "model.safetensors")
    expected = weight_shapes(config)
    if set(weights) != set(expected):
        odd = sorted(set(weights) ^ set(expected))
        raise ValueError(f"{run}: model.safetensors does not fit config.json (e.g. {odd[0]!r})")
    tok = BPETokenizer.load(run / "tokenizer.json")
    if kind == "gpt2" and not config.bias:  # GPT2LMHeadModel always has biases: zeros add nothing
        full = weight_shapes(GPTConfig.from_dict({**config.to_dict(), "bias": True}))
        weights = {n: weights.get(n, np.zeros(s, np.float32)) for n, s in full.items()}
    hf_tensors = {}
    for name, array in weights.items():
        sources, how = convert.to_hf_sources(config, name)
        for source, part in zip(sources, convert.split(how, array.astype(np.float32))):
            hf_tensors[source] = part
    eos = eos_token(tok)
    special = {"bos_token_id": eos[1], "eos_token_id": eos[1]} if eos else {}
    out, tmp = _fresh_target(out)
    try:
        (tmp / "config.json").write_text(json.dumps(convert.config_to_hf(config, special), indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(
            {"do_sample": True, "max_length": config.block_size, **special}, indent=2))
        write_safetensors(tmp / "model.safetensors",
                          {n: (a.shape, lambda a=a: a) for n, a in hf_tensors.items()},
                          {"format": "pt"})
        save_hf_tokenizer(tok, tmp)
        return _finish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
