"""HTTP conformance of an app's routes: a true ``Allow`` header and documented request errors.

- ``AllowMiddleware`` (pure ASGI): ``OPTIONS`` on a path that some route serves answers 204 with
  ``Allow`` listing every method of every route of that path (Starlette alone answers 405 with the
  methods of the first route that matched the path only: ``GET`` for ``GET|PUT /ops/chaos/payment``);
  any 405 gets the same true ``Allow``. Its body (problem+json) is the app's own.
- ``document_request_errors(router)``: every route that reads a body documents 400 (the body cannot be
  decoded) and 422 (invalid), every route with parameters documents 422; as problem+json, so the
  OpenAPI document lists what a route can answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.routes import leaf_routes
from domain.api.problems import problem_responses


def allowed_methods(routes: Iterable[Any], scope: Scope) -> set[str]:
    """Every method some route accepts for ``scope``'s path (empty: no route serves that path)."""
    path = scope.get("path", "")
    methods: set[str] = set()
    for prefix, route in leaf_routes(routes):
        route_methods = getattr(route, "methods", None)
        if not route_methods or (prefix and not path.startswith(prefix)):
            continue
        probe = {**scope, "type": "http", "path": path[len(prefix):]}
        match, _ = route.matches(probe)
        if match is not Match.NONE:  # FULL: this method; PARTIAL: the path, another method
            methods |= {m.upper() for m in route_methods}
    if methods:
        methods.add("OPTIONS")
    return methods


class AllowMiddleware:
    """Answers ``OPTIONS`` with the path's real methods and makes every 405's ``Allow`` true."""

    def __init__(self, app: ASGIApp, routes: Iterable[Any]) -> None:
        self.app = app
        self.routes = routes  # the app's live route list: routes added later count too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            allowed = allowed_methods(self.routes, scope)
            if allowed and not self._declares_options(scope):
                await send({"type": "http.response.start", "status": 204,
                            "headers": [(b"allow", _header(allowed))]})
                await send({"type": "http.response.body", "body": b""})
                return

        async def send_true_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = allowed_methods(self.routes, scope)
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                headers.append((b"allow", _header(allowed)))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_true_allow)

    def _declares_options(self, scope: Scope) -> bool:
        """A route of its own answers OPTIONS on this path: leave it to that route."""
        path = scope.get("path", "")
        for prefix, route in leaf_routes(self.routes):
            if "OPTIONS" in (getattr(route, "methods", None) or ()) and path.startswith(prefix):
                match, _ = route.matches({**scope, "path": path[len(prefix):]})
                if match is Match.FULL:
                    return True
        return False


def _header(methods: set[str]) -> bytes:
    return ", ".join(sorted(methods)).encode()


def document_request_errors(router: APIRouter) -> None:
    """Add 400/422 problem+json to the OpenAPI responses of the router's routes that can answer them
    (call it before the router is included: an included router's routes are not walked)."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        dependant = route.dependant
        has_params = bool(dependant.path_params or dependant.query_params or dependant.header_params
                          or dependant.cookie_params)
        codes: list[int] = []
        if route.body_field is not None:
            codes += [400, 422]
        elif has_params:
            codes.append(422)
        documented: dict[int | str, Any] = route.responses
        for code, spec in problem_responses(*codes).items():
            if code not in documented and str(code) not in documented:
                documented[code] = spec
