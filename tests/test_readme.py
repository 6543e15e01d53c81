"""The README's examples work: every ```python block runs, and every `tinyllm ...` line of a
```bash block parses with the real command line (a flag that does not exist fails here).

A block meant only for display is marked by the line `<!-- readme: not run -->` just before
it; keep such exceptions few. Python blocks run in order, each in a fresh namespace, in a
folder where `runs/tinyllm` holds a tiny trained run (for the blocks that load one). Plain
``` blocks that follow a Python block (prose between them allowed, no other code block) show
its output: what it prints must be exactly their text.
"""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from tinyllm.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOT_RUN = "<!-- readme: not run -->"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language):
    """(line number, code, expected output or None) of each fenced block in that language,
    unless marked not run."""
    text = README.read_text()
    fences = list(FENCE.finditer(text))
    found = []
    for i, match in enumerate(fences):
        if match.group(1) != language:
            continue
        before = text[:match.start()].rstrip().splitlines()
        if before and before[-1].strip() == NOT_RUN:
            continue
        shown = []
        for after in fences[i + 1:]:
            if after.group(1):
                break
            shown.append(after.group(2))
        found.append((text.count("\n", 0, match.start()) + 1, match.group(2),
                      "".join(shown) if shown else None))
    return found


def commands(code):
    """Each shell command of a block: continuation lines joined, comments dropped, `&&` split."""
    joined = code.replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            yield from (part.strip() for part in line.split("&&"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A folder holding runs/tinyllm: a one-layer model trained for two steps."""
    from pydoc_data.topics import topics

    folder = tmp_path_factory.mktemp("readme")
    corpus = folder / "texts"
    corpus.mkdir()
    for name in list(topics)[:10]:  # ten documents of the built-in corpus
        (corpus / f"{name}.txt").write_text(topics[name])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["train", "--data", str(corpus), "--out", str(folder / "runs" / "tinyllm"),
                     "--vocab-size", "300", "--n-layer", "1", "--n-embd", "16", "--n-head", "2",
                     "--block-size", "16", "--batch-size", "2", "--max-steps", "2",
                     "--eval-interval", "2", "--eval-tokens", "256", "--quiet"])
    assert code == 0
    return folder


PYTHON_BLOCKS = blocks("python")


def test_the_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 4


@pytest.mark.parametrize("line, code, shown", PYTHON_BLOCKS,
                         ids=[f"line{n}" for n, _, _ in PYTHON_BLOCKS])
def test_python_block_runs(line, code, shown, trained_run, monkeypatch):
    monkeypatch.chdir(trained_run)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
    if shown is not None:
        assert printed.getvalue() == shown


def test_shown_output_is_checked():
    assert any(shown for _, _, shown in PYTHON_BLOCKS)


def shell_commands():
    return [(line, command) for line, code, _ in blocks("bash") for command in commands(code)]


@pytest.mark.parametrize("line, command", shell_commands())
def test_bash_commands_use_real_flags_and_files(line, command):
    words = shlex.split(command)
    where = f"README.md:{line}: {command}"
    if words[0] in ("mpiexec", "mpirun") and "tinyllm" in words:  # a launcher, then the command
        words = words[words.index("tinyllm"):]
    if words[0] == "tinyllm":
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as stop:  # argparse's way of refusing (or of printing --help)
            assert stop.code == 0, where
    elif words[0] == "python":
        assert (ROOT / words[1]).is_file(), where
    else:
        assert words[0] in {"pip", "pytest", "apt-get", "brew"}, where
