"""The leaf routes of a Starlette/FastAPI app, walked once: the node's route resolver (guardians)
and its ``Allow`` header (domain.api) both need them, and neither package may import the other."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def leaf_routes(routes: Iterable[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(prefix, route) for every route that serves requests itself. Newer FastAPI keeps an included
    router as one entry (``original_router`` + ``include_context.prefix``) that a plain Starlette walk
    cannot match: walk into it. Mounted sub-applications are kept whole (they match by prefix)."""
    out: list[tuple[str, Any]] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            sub = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            out.extend(leaf_routes(inner.routes, prefix + sub))
        elif hasattr(route, "matches"):
            out.append((prefix, route))
    return out
