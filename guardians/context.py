"""The caller of the current request: its origin and its entrance (the HTTP route resource).

The HTTP middleware sets them for the request (``caller_context``); the engine's checkers read
them wherever the request goes — into the domain's ``guard()`` calls too, also on the threadpool
(a ``ContextVar`` is copied into ``run_in_threadpool``). ``entry(..., origin=...)`` overrides the
origin for one entry. Outside a request the origin is ``default`` and there is no entrance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

DEFAULT_ORIGIN = "default"

_CALLER: ContextVar[tuple[str, str | None]] = ContextVar("guardians_caller", default=(DEFAULT_ORIGIN, None))


# the (origin, entrance) pair of the current context in one read (the hot path's accessor)
current_caller = _CALLER.get


def current_origin() -> str:
    return _CALLER.get()[0]


def set_caller(origin: str | None, entrance: str | None) -> object:
    """Set the caller for the current context; returns a token for ``reset_caller``."""
    return _CALLER.set((origin or DEFAULT_ORIGIN, entrance))


def reset_caller(token: object) -> None:
    _CALLER.reset(token)  # type: ignore[arg-type]


@contextmanager
def caller_context(origin: str | None, entrance: str | None = None) -> Iterator[None]:
    token = _CALLER.set((origin or DEFAULT_ORIGIN, entrance))
    try:
        yield
    finally:
        _CALLER.reset(token)
