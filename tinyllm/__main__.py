"""`python -m tinyllm` is the `tinyllm` command."""

import sys

from tinyllm.cli import main

if __name__ == "__main__":
    sys.exit(main())
