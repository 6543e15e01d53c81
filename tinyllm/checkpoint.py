"""Checkpoints: everything needed to continue a run exactly, written so a crash never breaks one.

    RUN_DIR/config.json          model and training configuration (written once)
    RUN_DIR/tokenizer.json       the tokenizer (written once)
    RUN_DIR/checkpoint-best/     the same, at the best evaluation so far (lowest val loss)
    RUN_DIR/checkpoint/          the latest checkpoint:
        model.safetensors        the weights, GPT-2 names (safetensors: never pickle)
        optimizer.safetensors    the optimizer's moment buffers
        state.json               step, optimizer hyperparameters and counters, RNG states,
                                 data-loader position, training-loop counters

A new checkpoint is written whole into RUN_DIR/.checkpoint.tmp (every file fsynced), then
swapped in by two renames: checkpoint -> .checkpoint.old, .checkpoint.tmp -> checkpoint. A crash
at any point leaves either `checkpoint` or `.checkpoint.old` complete, and `load_checkpoint`
falls back to the old one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from autograd.backend import asnumpy
from tinyllm.safetensors import (
    SafetensorsError,
    atomic_write,
    fsync_dir,
    load_file,
    read_regular_file,
    read_shapes,
    save_file,
)

FORMAT = "tinyllm-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or does not fit the model it is loaded into."""


def write_json(path, obj):
    """Write JSON atomically (temporary file, fsync, rename)."""
    text = json.dumps(obj, indent=2, sort_keys=True)
    atomic_write(path, lambda f: f.write(text), mode="w")


def read_json(path):
    """A JSON object from a regular file (not a link); anything else is a CheckpointError
    naming the file."""
    path = Path(path)
    if not os.path.lexists(path):
        raise CheckpointError(f"{path}: missing")
    raw = read_regular_file(path, CheckpointError)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return obj


def _optimizer_split(optimizer):
    """The optimizer's state_dict as (arrays for safetensors, everything else for JSON)."""
    sd = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    arrays, scalars = {}, {}
    for index, entry in sd["state"].items():
        for name, value in entry.items():
            if hasattr(value, "shape") and value.ndim > 0:
                arrays[f"{index}.{name}"] = asnumpy(value)
            else:
                scalars.setdefault(str(index), {})[name] = (
                    value.item() if hasattr(value, "item") else value)
    return arrays, {"param_groups": sd["param_groups"], "scalars": scalars}


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _index(text) -> int:
    if not isinstance(text, str) or not text.isdigit():
        raise ValueError(f"parameter index {text!r} is not a non-negative integer")
    return int(text)


def _optimizer_join(arrays, meta):
    """The optimizer's state_dict from its two halves, every value's type checked (the state
    comes from a file: a string where a count belongs must fail here, not steps later)."""
    state = {}
    for key, value in arrays.items():
        index, _, name = key.partition(".")
        state.setdefault(_index(index), {})[name] = value
    if not isinstance(meta.get("scalars"), dict) or not isinstance(meta.get("param_groups"), list):
        raise ValueError("state.json's optimizer entry needs 'scalars' and 'param_groups'")
    for index, entry in meta["scalars"].items():
        if not isinstance(entry, dict) or not all(_number(v) for v in entry.values()):
            raise ValueError(f"scalars of parameter {index} must be numbers")
        state.setdefault(_index(index), {}).update(entry)
    for group in meta["param_groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise ValueError("each param group must be an object with a 'params' list")
        for key, value in group.items():
            ok = (all(_number(v) for v in value) if isinstance(value, list)
                  else value is None or isinstance(value, bool) or _number(value))
            if not ok:
                raise ValueError(f"param group setting {key!r} = {value!r} is not a number")
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir, model, optimizer, state: dict, name: str = "checkpoint") -> Path:
    """Write model, optimizer (or its state_dict) and `state` (JSON-serialisable) as
    RUN_DIR/<name> (checkpoint, or checkpoint-best for the best evaluation so far), by the same
    swap of whole folders."""
    run_dir = Path(run_dir)
    tmp, final, old = run_dir / f".{name}.tmp", run_dir / name, run_dir / f".{name}.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {name: asnumpy(arr) for name, arr in model.state_dict().items()}
    save_file(weights, tmp / "model.safetensors", {"format": FORMAT, "step": state.get("step", 0)})
    opt_arrays, opt_meta = _optimizer_split(optimizer)
    save_file(opt_arrays, tmp / "optimizer.safetensors", {"format": FORMAT})
    write_json(tmp / "state.json",
               {"format": FORMAT, "version": VERSION, "optimizer": opt_meta, **state})
    fsync_dir(tmp)
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(run_dir)
    if old.exists():
        shutil.rmtree(old)
    return final


def checkpoint_dir(run_dir, name: str = "checkpoint") -> Path:
    """The newest complete checkpoint folder of a run (falls back after an interrupted swap).
    `name="checkpoint-best"` gives the best evaluation's."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    for candidate in (run_dir / name, run_dir / f".{name}.old"):
        if candidate.is_symlink():
            raise CheckpointError(f"{candidate}: is a symbolic link; refusing to follow it")
        if os.path.lexists(candidate / "state.json"):
            return candidate
    raise CheckpointError(f"{run_dir}: has no checkpoint (expected {run_dir / name})")


def _check_finite(arrays, path):
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")


def load_weights(model, folder):
    """Load model.safetensors from `folder` into `model`, with errors that name the file.
    Weights that are NaN or infinite are refused: such a model can only produce garbage."""
    path = Path(folder) / "model.safetensors"
    try:
        weights, _ = load_file(path)
    except SafetensorsError as err:
        raise CheckpointError(str(err)) from None
    _check_finite(weights, path)
    try:
        model.load_state_dict(weights, strict=True)
    except Exception as err:  # a mismatch between file and model: say which file, one line
        raise CheckpointError(f"{path} does not fit this model: {_one_line(err)}") from None


def check_fits(folder, config) -> None:
    """Before a GPT is built for `folder`'s weights: every tensor the GPTConfig `config` (from
    config.json) describes must be in model.safetensors with its shape, compared on the file's
    header alone (tensors beyond them, a fine-tune's adapters, are left to the loading). A
    hand-edited size would otherwise be built first: n_embd 290962 asks NumPy for terabytes,
    n_layer 10**12 never finishes."""
    from tinyllm.model import weight_shapes

    path = Path(folder) / "model.safetensors"
    try:
        saved = read_shapes(path)
    except SafetensorsError as err:
        raise CheckpointError(str(err)) from None
    layers = len({name.split(".")[2] for name in saved if name.startswith("transformer.h.")})
    if config.n_layer != layers:  # first: the expected shapes are listed layer by layer
        raise CheckpointError(f"{path} holds {layers} layers but the configuration "
                              f"(config.json) asks for n_layer={config.n_layer}")
    expected = weight_shapes(config)
    wrong = [f"{name} {shape} vs {saved.get(name, 'absent')}"
             for name, shape in expected.items() if saved.get(name) != shape]
    if wrong:
        raise CheckpointError(f"{path} does not fit the configuration (config.json): "
                              f"{len(wrong)} tensors differ (configured vs saved), e.g. "
                              + "; ".join(wrong[:3]))


def load_model(config: dict, folder, seed: int = 0):
    """The GPT that `config` (config.json's "model" section) describes, with the weights of
    checkpoint `folder`: checked against the file first, then built and loaded."""
    from tinyllm.model import GPT, GPTConfig

    model_config = GPTConfig.from_dict(config)
    check_fits(folder, model_config)
    model = GPT(model_config, seed=seed)
    load_weights(model, folder)
    return model


def _one_line(err, limit=400) -> str:
    text = " | ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + " ..."


def load_checkpoint(run_dir, model, optimizer=None) -> dict:
    """Restore weights (and optimizer state) in place; return the saved training state."""
    folder = checkpoint_dir(run_dir)
    state = read_json(folder / "state.json")
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise CheckpointError(f"{folder / 'state.json'}: not a {FORMAT} v{VERSION} checkpoint")
    load_weights(model, folder)
    if optimizer is not None:
        path = folder / "optimizer.safetensors"
        try:
            arrays, _ = load_file(path)
        except SafetensorsError as err:
            raise CheckpointError(str(err)) from None
        _check_finite(arrays, path)
        try:
            optimizer.load_state_dict(_optimizer_join(arrays, state["optimizer"]))
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
            raise CheckpointError(f"{path} (with {folder / 'state.json'}) does not fit this "
                                  f"optimizer: {type(err).__name__}: {err}") from None
    return state


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state
