"""The `tinyllm` command bounds OpenBLAS's idle spinning before NumPy loads, unless the user
chose a value (tinyllm/blas_spin.py)."""

import os
import subprocess
import sys
from pathlib import Path

from tinyllm.blas_spin import SPIN_DEFAULT, SPIN_VAR, bound_blas_spin

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import sys, os\nfrom tinyllm import cli\n"
         "try:\n    cli.main(['--version'])\nexcept SystemExit:\n    pass\n"
         "import numpy  # noqa\nprint(os.environ.get('" + SPIN_VAR + "'))\n")


def _probe(**env):
    clean = {k: v for k, v in os.environ.items() if k != SPIN_VAR}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env={**clean, "PYTHONPATH": str(ROOT), **env}, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_the_command_sets_the_default_but_keeps_the_users_value():
    assert _probe() == SPIN_DEFAULT
    assert _probe(**{SPIN_VAR: "28"}) == "28"


def test_nothing_is_set_once_numpy_is_loaded_or_when_the_user_chose():
    import numpy  # noqa: F401  (the test process has NumPy; setting now would mislead)

    env = {}
    assert bound_blas_spin() is False and bound_blas_spin(env) is True
    assert env == {SPIN_VAR: SPIN_DEFAULT}
    assert bound_blas_spin({SPIN_VAR: "4"}) is False
