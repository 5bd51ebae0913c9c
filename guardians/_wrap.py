"""The ``@engine.entry(...)`` decorator's wrappers, made by interpreted code.

Not in ``guardians._native.MODULES`` on purpose: compiled by mypyc, a nested function is an object with a
``__dict__`` and a ``__weakref__`` slot that mypyc, on Python 3.11, visits and clears as if it owned it
(and never clears the weak references to the object), so a weak reference to a wrapper — which any
library may take to a function it is handed — corrupts memory (guardians/README.md, "The compiled hot
path"). Here they are plain Python functions; the ``Entry`` each call enters is compiled.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any


def guarded(fn: Callable[..., Any], make_entry: Callable[[], Any]) -> Callable[..., Any]:
    """``fn`` run inside ``make_entry()``, a fresh entry per call (``async with`` for a coroutine)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*a: Any, **k: Any) -> Any:
            async with make_entry():
                return await fn(*a, **k)

        return awrapper

    @functools.wraps(fn)
    def wrapper(*a: Any, **k: Any) -> Any:
        with make_entry():
            return fn(*a, **k)

    return wrapper
