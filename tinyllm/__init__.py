"""tinyllm: language models built on the `autograd` engine alone.

Heavy submodules are imported lazily so that `import tinyllm` (and the `tinyllm` command's
start-up) stays fast.
"""

__version__ = "0.1.0"

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


__all__ = ["GPT", "GPTConfig", "BPETokenizer", "__version__"]
