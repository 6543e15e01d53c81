"""Whether operations record a graph: `no_grad()`, `enable_grad()`, `is_grad_enabled()`.

A context variable (not a global) so that threads and async tasks each keep their own mode.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

_grad_enabled = contextvars.ContextVar("autograd_grad_enabled", default=True)


def is_grad_enabled() -> bool:
    return _grad_enabled.get()


class _GradMode(contextlib.ContextDecorator):
    """Base for `no_grad` and `enable_grad`: a context manager that also decorates functions."""

    enabled: bool

    def __enter__(self):
        self._token = _grad_enabled.set(self.enabled)
        return self

    def __exit__(self, *exc):
        _grad_enabled.reset(self._token)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Inside this block, ops record nothing: results never require grad (evaluation, updates)."""

    enabled = False


class enable_grad(_GradMode):
    """Turn recording back on inside a `no_grad` block."""

    enabled = True
