"""Make sure the `autograd` that Python imports is tinyllm's engine, not another project's.

Two projects install a top-level package called `autograd`: this one's engine and the well-known
HIPS autograd (`pip install autograd`). One environment holds only one folder of that name, so
installing the second silently overwrites files of the first, and whatever then runs fails far
from the cause. `import tinyllm` checks first and stops with the fix.

The engine marks itself with one line in its `__init__.py` (`__tinyllm_engine__ = True`). The
check reads that file instead of importing it, so `import tinyllm` (and `tinyllm --version`)
stays free of NumPy's start-up time; only when the file cannot be read as expected does it import
the package and look for the attribute.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from tinyllm._version import DISTRIBUTION

MARKER = "__tinyllm_engine__ = True"
MISSING = "(none: no package named 'autograd' is installed)"


def foreign_engine() -> str | None:
    """Where the `autograd` Python would import comes from, if it is not tinyllm's engine; else None."""
    module = sys.modules.get("autograd")
    if module is None:
        try:
            spec = importlib.util.find_spec("autograd")
        except (ImportError, ValueError) as err:
            return f"(cannot be located: {err})"
        if spec is None:
            return MISSING
        origin = spec.origin if spec.has_location else None
        if origin and origin.endswith("__init__.py"):
            try:
                with open(origin, "rb") as f:
                    if MARKER.encode() in f.read():
                        return None
            except OSError:
                pass
        try:
            module = importlib.import_module("autograd")
        except Exception as err:  # a foreign package may fail to import in any way
            return f"{origin or spec.name} (importing it failed: {type(err).__name__}: {err})"
    if getattr(module, "__tinyllm_engine__", False):
        return None
    return getattr(module, "__file__", None) or f"{module!r}"


def clash_message(where: str) -> str:
    if where == MISSING:
        return (f"tinyllm: its engine, the package 'autograd', is missing from this environment.\n"
                f"Reinstall it: pip install --force-reinstall {DISTRIBUTION}")
    return (
        f"tinyllm: the package 'autograd' that Python imports here is not tinyllm's engine:\n"
        f"    {where}\n"
        f"Another project, most likely HIPS autograd (`pip install autograd`), installs a package\n"
        f"with the same name, and one environment can hold only one of them. Install tinyllm in a\n"
        f"virtual environment of its own:\n"
        f"    python -m venv ~/.venvs/tinyllm && ~/.venvs/tinyllm/bin/pip install {DISTRIBUTION}\n"
        f"To repair this environment: `pip uninstall autograd {DISTRIBUTION}`, then install the\n"
        f"one you want here. (A folder named 'autograd' in the current directory shadows it too.)"
    )


def check_engine() -> None:
    """Raise ImportError with the fix when `autograd` is not tinyllm's engine."""
    where = foreign_engine()
    if where is not None:
        raise ImportError(clash_message(where))
