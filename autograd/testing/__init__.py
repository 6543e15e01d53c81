"""Tools for proving gradients right, shipped so users can test their own ops:
`gradcheck` (finite differences), `check_invariants` (no mutation, no shared memory, exact
accumulation) and `strategies` (hypothesis strategies; needs the `test` extra)."""

from autograd.testing.gradcheck import GradcheckError, gradcheck
from autograd.testing.invariants import InvariantError, check_invariants

__all__ = ["gradcheck", "GradcheckError", "check_invariants", "InvariantError"]
