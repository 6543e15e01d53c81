# Shared by .ci/run, .ci/matrix and .ci/wheel_check (sourced, not run).
# Every step prints what it does, how long it took, and appends one line to $CI_SUMMARY.

CI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CI_TMP="${CI_TMP:-${TMPDIR:-/tmp}}"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

# find_python 3.10 -> the path of a Python 3.10 interpreter, or nothing.
# `python3` (the machine's default) is tried first, then pythonX.Y on PATH, then pyenv's.
find_python() {
  local want="$1" candidate
  for candidate in python3 "python$want" "$HOME"/.pyenv/versions/"$want".*/bin/python"$want"; do
    candidate="$(command -v "$candidate" 2>/dev/null)" || continue
    if [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# fresh_venv PYTHON DIR: a new virtual environment, as a new user would make it (the pip that
# comes with that Python, nothing upgraded).
fresh_venv() {
  rm -rf "$2"
  "$1" -m venv "$2"
}

# run_pytest [--allow-empty] ARGS...: pytest, with its summary line kept for the final report.
# pytest exits 5 when it collected no tests: for the suite that means collection broke (a
# failure, said plainly); a step that may legitimately select nothing (say `-m gpu` on a
# machine without one) passes --allow-empty, and then 5 counts as success.
run_pytest() {
  local allow_empty=0 log rc errexit=0
  if [ "${1:-}" = "--allow-empty" ]; then allow_empty=1; shift; fi
  log="$(mktemp "$CI_TMP/tinyllm-ci-pytest.XXXXXX")"
  case $- in *e*) errexit=1 ;; esac
  set +e
  pytest "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  [ "$errexit" -eq 1 ] && set -e
  CI_LAST_PYTEST="$(grep -E '^=+ .*(passed|failed|error|skipped|no tests ran).* =+$' "$log" | tail -n 1 \
                    | sed -E 's/^=+ //; s/ =+$//')"
  rm -f "$log"
  if [ "$rc" -eq 5 ]; then
    if [ "$allow_empty" -eq 1 ]; then
      echo "CI: pytest selected no tests here (allowed for this step)"
      return 0
    fi
    echo "CI: pytest collected no tests: the suite did not load" >&2
  fi
  return "$rc"
}

# record NAME STATUS SECONDS DETAIL: one line of the final table.
record() {
  [ -n "${CI_SUMMARY:-}" ] && printf '%-12s %-5s %5ss  %s\n' "$1" "$2" "$3" "$4" >> "$CI_SUMMARY"
  printf '== %s: %s in %ss: %s\n' "$1" "$2" "$3" "$4"
}
