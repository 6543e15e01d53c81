"""Release: one version, and a wheel and an sdist that carry every file the packages need.

The fast tests read pyproject.toml's packaging rules and the package folders (nothing is built);
`test_built_wheel_and_sdist_hold_exactly_the_predicted_files` builds both with setuptools'
own build hooks (about a second) and checks the rules do what the fast tests assume. The
end-to-end check (a fresh virtual environment, `pip install` of the wheel, `tinyllm train`, the
test suite from outside the source tree) is .ci/wheel_check, which .ci/run calls.
"""

import fnmatch
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import tinyllm
from tinyllm import _version

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("autograd", "tinyllm")


def _in_source_checkout():
    return (REPO / "pyproject.toml").is_file() and all((REPO / p / "__init__.py").is_file()
                                                       for p in PACKAGES)


needs_source = pytest.mark.skipif(not _in_source_checkout(),
                                  reason="needs the source checkout (tests run from an installed wheel)")


def _pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _package_tree():
    """Every file under the package folders, as paths relative to the repository root."""
    files = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                files.add(path.relative_to(REPO).as_posix())
    return files


def _predicted_wheel(tree, package_data):
    """The files setuptools puts in the wheel: every module, plus data matching package-data.

    Package discovery in pyproject.toml finds every folder under the packages (namespace
    packages included), so a data file goes in when its name matches a pattern listed for its
    package or for "*".
    """
    wheel = set()
    for rel in tree:
        folder, name = rel.rsplit("/", 1)
        package = folder.replace("/", ".")
        patterns = package_data.get("*", []) + package_data.get(package, [])
        if name.endswith(".py") or any(fnmatch.fnmatchcase(name, p) for p in patterns):
            wheel.add(rel)
    return wheel


def test_version_is_written_once_and_printed_by_the_command():
    assert tinyllm.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", _version.__version__)
    out = subprocess.run([sys.executable, "-m", "tinyllm", "--version"], capture_output=True,
                         text=True, cwd=pathlib.Path(tinyllm.__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"tinyllm {_version.__version__}"


@needs_source
def test_pyproject_reads_the_version_and_names_the_distribution():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tinyllm._version.__version__"}
    assert project["project"]["name"] == _version.DISTRIBUTION
    literal = re.compile(r"""^__version__\s*=\s*["']""", re.M)
    elsewhere = [p for p in _package_tree() if p.endswith(".py") and p != "tinyllm/_version.py"
                 and literal.search((REPO / p).read_text(encoding="utf-8"))]
    assert not elsewhere, f"a second version literal: {elsewhere}"


@needs_source
def test_every_file_in_the_package_folders_goes_into_the_wheel():
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]
    tree = _package_tree()
    left_out = sorted(tree - _predicted_wheel(tree, package_data))
    assert not left_out, (f"these files would be left out of the wheel: {left_out}; add a pattern "
                          f"for them to [tool.setuptools.package-data] in pyproject.toml")


def test_predicted_wheel_leaves_out_what_no_pattern_matches():
    """The predictor itself can fail: a file kind with no pattern stays out, a listed one goes in."""
    tree = {"tinyllm/data/corpus.py", "tinyllm/data/builtin.jsonl", "tinyllm/data/notes.yaml",
            "tinyllm/align/chat.jinja"}
    wheel = _predicted_wheel(tree, {"*": ["*.jsonl"], "tinyllm.align": ["*.jinja"]})
    assert wheel == {"tinyllm/data/corpus.py", "tinyllm/data/builtin.jsonl", "tinyllm/align/chat.jinja"}


def _git_files():
    git = shutil.which("git")
    if git is None:
        pytest.skip("needs git to list the checkout's files")
    out = subprocess.run([git, "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.decode().split("\0") if f and (REPO / f).is_file()]


@needs_source
def test_built_wheel_and_sdist_hold_exactly_the_predicted_files(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    src = tmp_path / "src"
    for rel in _git_files():  # a copy, so the build leaves nothing in the checkout
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    build = "from setuptools import build_meta as b; print(b.build_sdist('dist'), b.build_wheel('dist'))"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sdist_name, wheel_name = out.stdout.splitlines()[-1].split()  # setuptools logs before it
    version, dist = _version.__version__, _version.DISTRIBUTION.replace("-", "_")
    assert wheel_name == f"{dist}-{version}-py3-none-any.whl"

    tree = {p for p in _package_tree() if (src / p).exists()}
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]
    with zipfile.ZipFile(src / "dist" / wheel_name) as whl:
        names = whl.namelist()
        metadata = whl.read(f"{dist}-{version}.dist-info/METADATA").decode()
        entry_points = whl.read(f"{dist}-{version}.dist-info/entry_points.txt").decode()
    in_wheel = {n for n in names if not n.startswith(f"{dist}-{version}.dist-info/")}
    assert in_wheel == _predicted_wheel(tree, package_data)
    assert f"Name: {_version.DISTRIBUTION}\n" in metadata and f"Version: {version}\n" in metadata
    assert "tinyllm = tinyllm.cli:main" in entry_points

    with tarfile.open(src / "dist" / sdist_name) as sdist:
        in_sdist = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    needed = tree | {"README.md", "pyproject.toml"} | {
        p for p in _git_files() if p.startswith(("tests/", "examples/"))}
    assert not sorted(needed - in_sdist), f"missing from the sdist: {sorted(needed - in_sdist)}"


@pytest.mark.slow
def test_the_wheel_alone_trains_outside_the_source_tree(tmp_path):
    """Unpack the built wheel (a pure-Python wheel is a zip of site-packages files) and train
    the tiny preset for a few steps with nothing of the checkout on the path."""
    pytest.importorskip("setuptools", minversion="77")
    if not _in_source_checkout():
        pytest.skip("needs the source checkout to build from")
    src = tmp_path / "src"
    for rel in _git_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    build = "from setuptools import build_meta as b; print(b.build_wheel('dist'))"
    out = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    site = tmp_path / "site"
    with zipfile.ZipFile(src / "dist" / out.stdout.splitlines()[-1]) as whl:
        whl.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    where = subprocess.run([sys.executable, "-c", "import tinyllm, autograd; print(tinyllm.__file__, "
                            "autograd.__file__)"], cwd=work, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert all(pathlib.Path(p).is_relative_to(site) for p in where.stdout.split()), where.stdout
    train = ["train", "--preset", "tiny", "--max-steps", "3", "--eval-tokens", "2048", "--sample-tokens", "8",
             "--out", str(work / "run"), "--quiet"]
    run = subprocess.run([sys.executable, "-m", "tinyllm", *train], cwd=work, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (work / "run" / "summary.json").is_file()
