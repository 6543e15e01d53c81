"""`python -m autograd.debug.html script.py [-o backprop.html] [--name loss]`

Runs `script.py` as a program and, when it leaves a tensor in a variable called `loss` (or the
name given with --name) whose graph is still there, writes the step-through page for it. A script
that calls `to_html` itself needs no variable: its pages are written as it runs.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from autograd.debug.html import to_html


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograd.debug.html", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", help="a Python file that computes a loss")
    parser.add_argument("-o", "--out", default="backprop.html", help="the page to write")
    parser.add_argument("--name", default="loss", help="the variable holding the tensor")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.script):
        print(f"error: {args.script}: no such file", file=sys.stderr)
        return 2
    written_before = len(_written)
    sys.argv = [args.script]
    scope = runpy.run_path(args.script, run_name="__main__")
    tensor = scope.get(args.name)
    if tensor is None or not hasattr(tensor, "_node"):
        if len(_written) > written_before:
            print(f"{args.script} wrote {', '.join(_written[written_before:])}")
            return 0
        print(f"error: {args.script} defines no tensor named {args.name!r} and calls no to_html; "
              f"give the loss that name, pass --name, or call to_html(loss, path) in the script",
              file=sys.stderr)
        return 2
    try:
        path = to_html(tensor, args.out)
    except ValueError as err:
        print(f"error: {args.script}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}: open it in a browser (no network needed)")
    return 0


# pages written by to_html while the script ran (so a script that calls it needs no variable)
_written: list = []


def _record_calls():
    import autograd.debug.html as page_module

    original = page_module.to_html

    def recording(*args, **kwargs):
        path = original(*args, **kwargs)
        _written.append(str(path))
        return path

    page_module.to_html = recording
    import autograd.debug as debug

    debug.to_html = recording


if __name__ == "__main__":
    _record_calls()
    sys.exit(main())
