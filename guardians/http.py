"""HTTP side of guardians: problem+json answers for ``Blocked`` and a pure-ASGI middleware.

``blocked_problem(exc)`` maps a ``Blocked`` to ``(status, headers, body)``: 429 for
flow, param and system blocks, 503 for an open breaker, with ``Retry-After`` and an
RFC 9457 body naming the rule. Any HTTP layer can use it (e.g. a FastAPI exception
handler for ``Blocked`` raised deep inside a request).

``GuardMiddleware(app, engine, route_resolver)`` guards each request as the resource
``"METHOD /path/template"`` given by ``route_resolver(scope) -> str | None`` (None: not
guarded). Without a resolver, when added with ``app.add_middleware(GuardMiddleware,
engine=engine)`` to a Starlette/FastAPI app, it resolves against ``scope["app"].routes``.
Its checks run before the app is called, so a blocked request is answered
before anything reads its body. The request counts as inbound traffic (system rules
apply); a 5xx answer or an exception counts as an error for breakers on the route.

Building a route resolver: a resolver only needs the ASGI scope. For a Starlette or
FastAPI app, ``guardians.starlette_routes.starlette_route_resolver(app)`` walks
``app.routes`` (each route's ``matches(scope)``) and returns
``f"{method} {route.path}"`` for the first full match, e.g. ``"GET /orders/{order_id}"``.
Any other framework can supply its own function, e.g. a dict of exact paths.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from guardians.engine import Engine
from guardians.errors import Blocked

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM_BASE = "https://tradeguard.dev/problems/"
_TITLES = {429: "Too Many Requests", 503: "Service Unavailable"}


def blocked_problem(exc: Blocked) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, problem+json body) for a blocked call."""
    status = 503 if exc.kind == "breaker" else 429
    retry = max(1, math.ceil(exc.retry_after_s or 1))
    rule = exc.rule
    spec = rule.to_dict() if hasattr(rule, "to_dict") else None
    body = {
        "type": f"{PROBLEM_BASE}{exc.kind}-blocked",
        "title": _TITLES[status],
        "status": status,
        "detail": exc.detail,
        "resource": exc.resource,
        "rule": exc.rule_name,
        "rule_type": exc.kind,
        "rule_spec": spec,
        "retry_after_s": round(float(exc.retry_after_s or 0), 3),
    }
    headers = {"content-type": "application/problem+json", "retry-after": str(retry)}
    return status, headers, body


async def send_problem(send: Send, exc: Blocked) -> None:
    status, headers, body = blocked_problem(exc)
    payload = json.dumps(body, default=str).encode()
    raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class GuardMiddleware:
    """Pure ASGI middleware guarding routes as ``METHOD /path/template`` resources."""

    def __init__(
        self,
        app: ASGIApp,
        engine: Engine,
        route_resolver: Callable[[Scope], str | None] | None = None,
        *,
        args_from: Callable[[Scope], Mapping[str, str] | None] | None = None,
        origin_from: Callable[[Scope], str | None] | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.route_resolver = route_resolver
        self._auto: tuple[int, Callable[[Scope], str | None]] | None = None
        self.args_from = args_from
        self.origin_from = origin_from

    def _resolve(self, scope: Scope) -> str | None:
        if self.route_resolver is not None:
            return self.route_resolver(scope)
        # no resolver given: added with app.add_middleware(...), Starlette puts itself in scope["app"]
        app = scope.get("app")
        if app is None or not hasattr(app, "routes"):
            return None
        if self._auto is None or self._auto[0] != id(app):
            from guardians.starlette_routes import starlette_route_resolver

            self._auto = (id(app), starlette_route_resolver(app))
        return self._auto[1](scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        try:
            resource = self._resolve(scope)
        except Exception:
            log.exception("route resolver failed; request passes unguarded")
            resource = None
        if resource is None:
            await self.app(scope, receive, send)
            return
        engine = self.engine
        args = self.args_from(scope) if self.args_from else None
        origin = self.origin_from(scope) if self.origin_from else None
        try:
            slot, t0, wait = engine._enter(resource, args, origin, True)
        except Blocked as exc:
            await send_problem(send, exc)  # answered before the body is read
            return
        if slot is None:
            await self.app(scope, receive, send)
            return
        if wait:
            await engine.clock.asleep(wait)
            t0 = engine._pass(slot, True)
        state = {"status": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        error = True
        try:
            await self.app(scope, receive, send_wrapper)
            error = state["status"] >= 500
        except Blocked as exc:
            # a Blocked raised deep inside the request that nobody handled
            if state["status"]:
                raise
            await send_problem(send, exc)
            error = False
        finally:
            engine._exit(slot, t0, error, True)
