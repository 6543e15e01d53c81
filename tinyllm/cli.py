"""The `tinyllm` command: one sub-command per job, each registered by the module that owns it.

Each module listed in `_COMMAND_MODULES` exposes `register(subparsers)`, which adds its
sub-command(s) and sets `func` on the parser to a function taking the parsed arguments and
returning an exit code. Modules are imported only when the command line is parsed, so a missing
optional part never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

_COMMAND_MODULES = (
    "tinyllm.tokenizer.cli",  # tinyllm tokenizer train|encode|decode
    "tinyllm.data.cli",  # tinyllm prepare
    "tinyllm.train_cli",  # tinyllm train, tinyllm sample, tinyllm plot
    "tinyllm.align.cli",  # tinyllm finetune, tinyllm chat
    "tinyllm.align.dpo_cli",  # tinyllm dpo
    "tinyllm.evaluate.cli",  # tinyllm eval, tinyllm report, tinyllm pipeline
    "tinyllm.hf.cli",  # tinyllm import, tinyllm export
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line (`tinyllm train: error: ...`), as every
    other error of the command does, instead of the whole usage block first."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tinyllm",
        description="Train, sample and inspect small GPTs built on a NumPy autograd engine.",
    )
    from tinyllm import __version__

    parser.add_argument("--version", action="version", version=f"tinyllm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:  # a real missing dependency, not an absent module
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tinyllm.blas_spin import bound_blas_spin

    bound_blas_spin()  # before any command module imports NumPy (see tinyllm/blas_spin.py)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the sub-command they were given to
        prog = f"tinyllm {args.command}" if getattr(args, "command", None) else "tinyllm"
        print(f"{prog}: error: unrecognized arguments: {' '.join(unknown)} "
              f"(see {prog} --help)", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from autograd import blas

        blas.check_choice()  # AUTOGRAD_BLAS, before any work (MKL itself loads at first use)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as err:
        # Bad input, a missing file, a device that is not there: one line, no traceback
        # (set TINYLLM_DEBUG=1 to see where it came from).
        if os.environ.get("TINYLLM_DEBUG"):
            raise
        print(f"tinyllm {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
