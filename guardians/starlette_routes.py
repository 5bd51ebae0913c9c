"""Route resolver for Starlette / FastAPI apps (imports starlette lazily)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]


def starlette_route_resolver(app: Any, *, cache_size: int = 4096) -> Callable[[Scope], str | None]:
    """A ``route_resolver`` for GuardMiddleware: ``"METHOD /path/template"`` of the matching route.

    ``app`` is a Starlette or FastAPI application (or anything with ``.routes``);
    mounted sub-applications are searched with the mount's prefix. Unmatched
    requests (404s, wrong method) resolve to None and are not guarded. Results are
    cached per (method, path) in a bounded dict.
    """
    from starlette.routing import Match, Mount

    def search(routes: Any, scope: Scope, prefix: str) -> str | None:
        for route in routes:
            match, child = route.matches(scope)
            if match != Match.FULL:
                continue
            if isinstance(route, Mount):
                sub = {**scope, **child}
                found = search(route.routes, sub, prefix + route.path)
                if found is not None:
                    return found
                continue
            return f"{scope['method']} {prefix}{route.path}"
        return None

    cache: dict[tuple[str, str], str | None] = {}

    def resolve(scope: Scope) -> str | None:
        key = (scope.get("method", ""), scope.get("path", ""))
        try:
            return cache[key]
        except KeyError:
            pass
        routes = getattr(app, "routes", None) or getattr(getattr(app, "router", None), "routes", [])
        found = search(routes, dict(scope), "")
        if len(cache) >= cache_size:
            cache.clear()
        cache[key] = found
        return found

    return resolve
