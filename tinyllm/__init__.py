"""tinyllm: language models built on the `autograd` engine alone.

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


__all__ = ["GPT", "GPTConfig", "BPETokenizer", "__version__"]
