"""Route resolver for Starlette / FastAPI apps (imports starlette lazily)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from common.routes import leaf_routes

Scope = MutableMapping[str, Any]


def starlette_route_resolver(app: Any, *, cache_size: int = 4096) -> Callable[[Scope], str | None]:
    """A ``route_resolver`` for GuardMiddleware: ``"METHOD /path/template"`` of the matching route.

    ``app`` is a Starlette or FastAPI application (or anything with ``.routes``);
    included routers are flattened once, on the first request; mounted sub-applications
    are searched with the mount's prefix. Unmatched requests (404s, wrong method) resolve
    to None and are not guarded. Results are cached per (method, path) in a bounded dict.
    """
    from starlette.routing import Match, Mount

    def search(flat: list[tuple[str, Any]], scope: Scope) -> str | None:
        path = scope.get("path", "")
        for prefix, route in flat:
            if prefix and not path.startswith(prefix):
                continue
            sub = {**scope, "path": path[len(prefix):]} if prefix else scope
            match, child = route.matches(sub)
            if match != Match.FULL:
                continue
            if isinstance(route, Mount):
                found = search(leaf_routes(route.routes, ""), {**sub, **child})
                if found is not None:
                    return found.replace(" ", f" {prefix}{route.path}", 1)
                continue
            return f"{scope['method']} {prefix}{route.path}"
        return None

    flat: list[tuple[str, Any]] = []
    cache: dict[tuple[str, str], str | None] = {}

    def resolve(scope: Scope) -> str | None:
        key = (scope.get("method", ""), scope.get("path", ""))
        try:
            return cache[key]
        except KeyError:
            pass
        if not flat:
            routes = getattr(app, "routes", None) or getattr(getattr(app, "router", None), "routes", [])
            flat.extend(leaf_routes(routes, ""))
        found = search(flat, dict(scope))
        if len(cache) >= cache_size:
            cache.clear()
        cache[key] = found
        return found

    return resolve
