"""The `autograd` name clash: HIPS autograd installs a package with the engine's name.

Each test runs a fresh interpreter with a stand-in for the other project placed first on
sys.path (PYTHONPATH comes before site-packages), so whatever is installed in the test's own
environment does not matter.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import autograd
import tinyllm
from tinyllm._version import DISTRIBUTION

# The folder that holds both packages: the checkout, or site-packages for an installed wheel.
PACKAGES_ROOT = pathlib.Path(tinyllm.__file__).resolve().parents[1]
ENGINE_DIR = pathlib.Path(autograd.__file__).resolve().parent


def _python(code, *path, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd)


def _fake_hips(root):
    """A stand-in for HIPS autograd: a package `autograd` with its own API and no marker."""
    package = root / "autograd"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        '"""Stand-in for HIPS autograd."""\n'
        "from autograd.differential_operators import grad\n")
    (package / "differential_operators.py").write_text("def grad(fun):\n    return fun\n")
    return package


def _assert_clear_clash_message(stderr, where):
    last = stderr[stderr.index("ImportError"):]  # the message, after any traceback lines
    assert "not tinyllm's engine" in last or "two projects' files" in last, stderr
    assert str(where) in last, stderr
    assert "HIPS autograd" in last and "virtual environment" in last, stderr
    assert f"pip install {DISTRIBUTION}" in last, stderr


def test_tinyllm_stops_on_a_foreign_autograd_first_on_the_path(tmp_path):
    fake = _fake_hips(tmp_path / "other")
    out = _python("import tinyllm", tmp_path / "other", PACKAGES_ROOT, cwd=tmp_path)
    assert out.returncode != 0
    _assert_clear_clash_message(out.stderr, fake / "__init__.py")


def test_tinyllm_stops_on_a_foreign_autograd_already_imported(tmp_path):
    fake = _fake_hips(tmp_path / "other")
    out = _python("import autograd; import tinyllm", tmp_path / "other", PACKAGES_ROOT, cwd=tmp_path)
    assert out.returncode != 0
    _assert_clear_clash_message(out.stderr, fake / "__init__.py")


def test_the_command_stops_on_a_foreign_autograd(tmp_path):
    fake = _fake_hips(tmp_path / "other")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "other"), str(PACKAGES_ROOT)])}
    out = subprocess.run([sys.executable, "-m", "tinyllm", "--version"], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode != 0 and not out.stdout
    _assert_clear_clash_message(out.stderr, fake / "__init__.py")


def test_the_engine_stops_when_hips_files_share_its_folder(tmp_path):
    """HIPS installed first and this engine over it: our __init__.py runs, HIPS's modules remain."""
    mixed = tmp_path / "mixed" / "autograd"
    shutil.copytree(ENGINE_DIR, mixed, ignore=shutil.ignore_patterns("__pycache__"))
    (mixed / "numpy").mkdir()
    (mixed / "numpy" / "numpy_wrapper.py").write_text("# HIPS autograd's NumPy wrapper\n")
    out = _python("import autograd", tmp_path / "mixed", cwd=tmp_path)
    assert out.returncode != 0
    _assert_clear_clash_message(out.stderr, mixed)


def test_the_real_engine_passes_and_import_tinyllm_stays_free_of_numpy(tmp_path):
    code = ("import sys, tinyllm, tinyllm._engine_check as c; assert c.foreign_engine() is None; "
            "print('numpy' in sys.modules)")
    out = _python(code, PACKAGES_ROOT, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert autograd.__tinyllm_engine__ is True


def test_a_missing_engine_is_named(tmp_path):
    only_tinyllm = tmp_path / "only"
    shutil.copytree(PACKAGES_ROOT / "tinyllm", only_tinyllm / "tinyllm",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(only_tinyllm)}
    # -S: no site-packages, so an installed engine cannot stand in for the missing one.
    out = subprocess.run([sys.executable, "-S", "-c", "import tinyllm"], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode != 0
    assert "'autograd', is missing" in out.stderr and DISTRIBUTION in out.stderr, out.stderr
