"""Stop when this `autograd` folder also holds HIPS autograd's files.

HIPS autograd (`pip install autograd`) installs a package with the same name as this engine.
Installed into one environment, the second install writes its files over the first one's folder:
pip overwrites files, it never merges packages. When this engine's `__init__.py` wins, HIPS's
own modules are still there beside it (its `numpy/numpy_wrapper.py` is unmistakable), and code
written for either project breaks later in ways nobody can trace. One file check (microseconds)
finds it at import instead. (The other order, HIPS's `__init__.py` over ours, is caught by
`import tinyllm`, which looks for `__tinyllm_engine__` in the package it is about to use.)
"""

import os

HIPS_FILE = os.path.join("numpy", "numpy_wrapper.py")


def check_package_folder(folder: str) -> None:
    """Raise ImportError with the fix if `folder` also holds HIPS autograd's modules."""
    if os.path.exists(os.path.join(folder, HIPS_FILE)):
        raise ImportError(
            f"autograd: the folder {folder} holds two projects' files: tinyllm's engine and\n"
            f"HIPS autograd (`pip install autograd`), which install a package with the same name.\n"
            f"One environment can hold only one of them. Install tinyllm in a virtual environment\n"
            f"of its own:\n"
            f"    python -m venv ~/.venvs/tinyllm && ~/.venvs/tinyllm/bin/pip install tinyllm-engine\n"
            f"To repair this environment: `pip uninstall autograd tinyllm-engine`, then install the\n"
            f"one you want here."
        )
