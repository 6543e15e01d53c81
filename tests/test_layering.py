"""Architecture rules, checked by reading the source.

The packages are layered: `autograd` (the engine) imports only numpy, and cupy only through
`autograd/backend.py`; `tinyllm` builds on it; `examples/`, `benchmarks/` and `tests/` use both.
Optional or heavy modules are imported lazily, so `import autograd` stays fast."""

import ast
import pathlib
import subprocess
import sys

import autograd

# The folder holding the packages being tested: the checkout, or site-packages when the tests
# run against an installed wheel (.ci/wheel_check).
ROOT = pathlib.Path(autograd.__file__).resolve().parents[1]


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _py_files(package):
    return sorted((ROOT / package).rglob("*.py"))


def test_autograd_never_imports_tinyllm():
    bad = [(str(p.relative_to(ROOT)), m) for p in _py_files("autograd") for m in _imports(p)
           if m == "tinyllm" or m.startswith("tinyllm.")]
    assert not bad, f"autograd must not import tinyllm: {bad}"


def test_only_the_backend_imports_cupy():
    bad = [(str(p.relative_to(ROOT)), m) for pkg in ("autograd", "tinyllm") for p in _py_files(pkg)
           for m in _imports(p) if m.split(".")[0] in ("cupy", "cupyx")
           and p.name != "backend.py"]
    assert not bad, f"only autograd/backend.py may import cupy: {bad}"


def test_no_deep_learning_framework_in_the_packages():
    frameworks = {"torch", "jax", "tensorflow"}
    bad = [(str(p.relative_to(ROOT)), m) for pkg in ("autograd", "tinyllm") for p in _py_files(pkg)
           for m in _imports(p) if m.split(".")[0] in frameworks]
    assert not bad, f"the packages must not import a deep-learning framework: {bad}"


def test_ops_reach_numpy_only_through_the_backend():
    """An op that calls `np.` on its arrays breaks on CuPy; ops must use get_array_module."""
    bad = [str(p.relative_to(ROOT)) for p in _py_files("autograd/ops")
           if any(m == "numpy" or m.startswith("numpy.") for m in _imports(p))]
    assert not bad, f"ops must not import numpy (use autograd.backend.get_array_module): {bad}"


def test_import_autograd_is_light():
    """`import autograd` must not pull in optional or heavy modules."""
    code = ("import sys, autograd; heavy = {'cupy', 'mpi4py', 'matplotlib', 'tqdm', 'graphviz', "
            "'hypothesis', 'tinyllm'}; print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
