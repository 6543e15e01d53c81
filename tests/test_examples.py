"""Every example runs to the end (a smoke test: each must finish well under a minute)."""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).resolve().parents[1] / "examples").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "TINYLLM_EXAMPLE_OUT": str(tmp_path)}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "an example should print what a student should look at"


def test_examples_are_in_percent_cell_format():
    for script in EXAMPLES:
        text = script.read_text()
        assert text.lstrip().startswith(('"""', "#")), f"{script.name}: needs a header"
        assert "# %%" in text, f"{script.name}: use '# %%' cells so it opens as a notebook"


def test_every_example_is_on_the_tutorial_path():
    """examples/README.md describes each script: the path a student follows."""
    readme = (EXAMPLES[0].parent / "README.md").read_text()
    missing = [s.name for s in EXAMPLES if f"`{s.name}`" not in readme]
    assert not missing, f"add these to examples/README.md: {missing}"
