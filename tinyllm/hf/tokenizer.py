"""Tokenizers of Hugging Face folders: read `tokenizer.json` (byte-level BPE) or `vocab.json` +
`merges.txt`; write both, plus `tokenizer_config.json`, for `AutoTokenizer`.

Only byte-level BPE (GPT-2's scheme: bytes written as printable characters, see
tinyllm/tokenizer/io.py) is the same algorithm as our BPETokenizer. SentencePiece-style files
(Metaspace, byte fallback) are refused, naming what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinyllm.tokenizer import BPETokenizer
from tinyllm.tokenizer.io import TokenizerFileError, bytes_to_unicode

EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>")


def _pattern(path, pre) -> str:
    """Our split pattern from the pre_tokenizer: ByteLevel with its own regex is GPT-2's;
    Split(Regex) followed by ByteLevel(use_regex=false) is that regex."""
    if pre and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        if pre.get("add_prefix_space"):
            raise TokenizerFileError(path, "pre_tokenizer ByteLevel.add_prefix_space = true is "
                                     "not supported")
        return "gpt2"
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else []
    if (len(steps) == 2 and steps[0].get("type") == "Split" and "Regex" in steps[0].get("pattern", {})
            and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)):
        return steps[0]["pattern"]["Regex"]
    kind = pre.get("type") if pre else None
    raise TokenizerFileError(path, f"pre_tokenizer {kind!r} is not supported (byte-level BPE: "
                             "ByteLevel, or Split(Regex) then ByteLevel)")


def load_tokenizer_json(path) -> BPETokenizer:
    """Our tokenizer from an HF `tokenizer.json` holding byte-level BPE."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TokenizerFileError(path, f"invalid JSON: {err.msg}", err.lineno) from None
    model = doc.get("model") or {}
    if model.get("type") != "BPE":
        raise TokenizerFileError(path, f"model.type {model.get('type')!r} is not supported (BPE)")
    for key in ("byte_fallback", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise TokenizerFileError(path, f"model.{key} = {model[key]!r} is not supported")
    if doc.get("normalizer"):
        raise TokenizerFileError(path, f"normalizer {doc['normalizer'].get('type')!r} is not "
                                 "supported (none)")
    pattern = _pattern(path, doc.get("pre_tokenizer"))
    vocab = model.get("vocab") or {}
    table = bytes_to_unicode()
    missing = [b for b in range(256) if table[b] not in vocab]
    if missing:
        raise TokenizerFileError(path, f"no token for byte 0x{missing[0]:02x}: not byte-level BPE")
    byte_ids = [vocab[table[b]] for b in range(256)]
    merges = {}
    for n, merge in enumerate(model.get("merges") or []):
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        if a not in vocab or b not in vocab or a + b not in vocab:
            raise TokenizerFileError(path, f"merge {n} ({a!r}, {b!r}) names a token not in the "
                                     "vocab")
        merges[vocab[a], vocab[b]] = vocab[a + b]
    made = set(byte_ids) | set(merges.values())
    specials = {t: i for t, i in vocab.items() if i not in made}
    specials.update({t["content"]: t["id"] for t in doc.get("added_tokens") or []})
    try:
        return BPETokenizer(merges, pattern, specials, byte_ids)
    except ValueError as err:
        raise TokenizerFileError(path, str(err)) from None


def load_hf_tokenizer(folder) -> BPETokenizer:
    """The tokenizer of an HF folder: `tokenizer.json`, else `vocab.json` + `merges.txt`."""
    folder = Path(folder)
    if (folder / "tokenizer.json").exists():
        return load_tokenizer_json(folder / "tokenizer.json")
    if (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
        return BPETokenizer.from_gpt2_files(folder / "vocab.json", folder / "merges.txt")
    raise FileNotFoundError(f"{folder}: no tokenizer (tokenizer.json, or vocab.json + merges.txt)")


def eos_token(tok: BPETokenizer):
    """(name, id) of the end-of-text special token, or None."""
    for name in EOS_NAMES:
        if name in tok.special_tokens:
            return name, tok.special_tokens[name]
    return None


def save_hf_tokenizer(tok: BPETokenizer, folder) -> list:
    """Write tokenizer.json, tokenizer_config.json and (GPT-2 pattern) vocab.json + merges.txt;
    returns the names written."""
    folder = Path(folder)
    tok.save_hf(folder / "tokenizer.json")
    written = ["tokenizer.json"]
    if tok.pattern_name == "gpt2":  # GPT-2's slow tokenizer hard-codes this split pattern
        tok.save_gpt2_files(folder / "vocab.json", folder / "merges.txt")
        written += ["vocab.json", "merges.txt"]
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1 << 30,
              "clean_up_tokenization_spaces": False}
    eos = eos_token(tok)
    if eos:
        config.update(bos_token=eos[0], eos_token=eos[0])
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return written + ["tokenizer_config.json"]
