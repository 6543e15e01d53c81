"""tinyllm: language models built on the `autograd` engine alone.

    model, tok = tinyllm.load("runs/tinyllm")     # a trained run: (GPT, BPETokenizer)

Heavy submodules are imported lazily so that `import tinyllm` (and the `tinyllm` command's
start-up) stays fast.
"""

from tinyllm._engine_check import check_engine as _check_engine
from tinyllm._version import __version__

# Stop here, with the fix, if `autograd` is another project's package (HIPS autograd).
_check_engine()

_LAZY = {
    "GPT": "tinyllm.model",
    "GPTConfig": "tinyllm.model",
    "BPETokenizer": "tinyllm.tokenizer",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tinyllm' has no attribute {name!r}")


def load(run_dir, checkpoint=None):
    """The model and tokenizer of a run folder (what `tinyllm train` writes): returns
    `(model, tokenizer)`, the model in eval mode with the newest checkpoint's weights, or those
    of `checkpoint`, a folder inside the run (e.g. "checkpoint"). Raises ValueError (a
    CheckpointError or TokenizerFileError) naming the file when something is missing or damaged."""
    from pathlib import Path

    from tinyllm.checkpoint import CheckpointError, checkpoint_dir, load_model, read_json
    from tinyllm.tokenizer import BPETokenizer

    run = Path(run_dir)
    if not (run / "config.json").is_file():
        raise CheckpointError(f"{run}: not a run folder (no config.json)")
    config = read_json(run / "config.json")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{run / 'config.json'}: has no 'model' settings")
    folder = checkpoint_dir(run) if checkpoint is None else run / checkpoint
    model = load_model(config["model"], folder)
    model.eval()
    return model, BPETokenizer.load(run / "tokenizer.json")


__all__ = ["GPT", "GPTConfig", "BPETokenizer", "load", "__version__"]
