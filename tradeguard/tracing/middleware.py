"""HTTP: the route span, ``X-Trace-Id`` / ``traceparent`` on every response, ``trace_id`` in
every problem+json body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from common.redact import redact_text
from tradeguard.tracing.conventions import (
    _ORDER_PATH,
    ATTR_DECISION,
    ATTR_ORDER_ID,
    ATTR_REASON,
    ATTR_RESOURCE,
    ATTR_RULE,
    ATTR_RULE_TYPE,
)
from tradeguard.tracing.spans import (
    _CONTEXT_VAR,
    _SPAN_KEY,
    DeferredSpan,
    DeferredTracer,
    _enter,
    _leave,
    _time_ns,
)


def _is_problem(headers: Any) -> bool:
    """Whether a response's headers say problem+json (the first ``Content-Type`` decides)."""
    for k, v in headers:
        if k.lower() == b"content-type":
            return bool(v.startswith(b"application/problem+json"))
    return False


class RouteSpanMiddleware:
    """Pure ASGI, outermost: the route span of every HTTP request, ``X-Trace-Id`` + ``traceparent``
    on every response, ``trace_id`` in every problem+json body, the order id and a door-side block
    on the route span.

    This replaces ``opentelemetry-instrumentation-asgi``'s ``OpenTelemetryMiddleware`` (the route
    span of the first version). That generic middleware builds ~15 semantic-convention attributes
    per request (URL reconstruction, every header decoded, user agent, host…), records duration
    metrics, wraps ``send`` twice and pays for an SDK span: measured alone around an empty ASGI app
    it cost ~8× this middleware per request (~850 vs ~110 µs on the shared 2-core machine), for
    the ~99 % of traces the tail sampler then forgets. Here: the
    caller's context is extracted with the global propagator (``traceparent``, ``tracestate``,
    ``baggage``) only when the request carries one of its headers, and the span carries what the
    console and the tail decision read: ``http.request.method``, ``http.route``, ``url.path``,
    ``http.response.status_code``, ``tradeguard.resource`` (the guardians' route resource, also
    the span's name) and ERROR status for 5xx or an exception, as the ASGI instrumentation sets it.
    With the ``DeferredTracer`` the request's part of them (method, path, route, order id) is made
    only if the trace is kept (``DeferredSpan.http``: the response's headers are kept by reference
    and searched for ``Location`` then), the span is made, attached and ended inline, and the
    response's headers are searched (for problem+json) only for a status ≥ 400.
    """

    def __init__(self, app: Any, tracer: trace.Tracer,
                 route_name: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        from opentelemetry import propagate

        self.app = app
        self.tracer = tracer
        self.route_name = route_name
        self._extract = propagate.extract
        self._fields = frozenset(f.lower().encode("latin-1") for f in propagate.get_global_textmap().fields)

    def _name(self, scope: dict[str, Any]) -> str:
        name = None
        if self.route_name is not None:
            try:
                name = self.route_name(scope)
            except Exception:
                name = None
        return name or f"{scope.get('method', 'HTTP')} {scope.get('path', '')}"

    def _parent(self, scope: dict[str, Any]) -> context_api.Context | None:
        """The caller's context, extracted only when the request carries a propagation header."""
        carrier: dict[str, str] | None = None
        fields = self._fields
        for key, value in scope.get("headers") or ():
            if key in fields:
                if carrier is None:
                    carrier = {}
                carrier[key.decode("latin-1")] = value.decode("latin-1")
        return self._extract(carrier) if carrier is not None else None

    def _send(self, send: Any, span: trace.Span, trace_id: int, span_id: int,
              on_start: Callable[[int, Any], bool]) -> Callable[[dict[str, Any]], Any]:
        """The ``send`` the app gets: ``X-Trace-Id`` and ``traceparent`` added to the response's start;
        ``on_start(status, headers)`` notes the start on the span and says whether the answer is
        problem+json, whose start is then held until its body is complete and the body rewritten with
        ``trace_id`` (``_send_problem``)."""
        tid = b"%032x" % trace_id
        extra = ((b"x-trace-id", tid), (b"traceparent", b"00-%s-%016x-01" % (tid, span_id)))
        problem: dict[str, Any] | None = None
        body = b""

        async def wrapped(message: dict[str, Any]) -> None:
            nonlocal problem, body
            kind = message["type"]
            if kind == "http.response.start":
                headers = message.get("headers", ())
                is_problem = on_start(message.get("status", 0), headers)
                message = {**message, "headers": [*headers, *extra]}
                if is_problem:
                    problem = message  # rewritten once the body is complete
                    return
            elif kind == "http.response.body" and problem is not None:
                body += message.get("body", b"")
                if message.get("more_body"):
                    return
                start, problem = problem, None
                await self._send_problem(send, start, body, tid.decode(), span)
                return
            await send(message)

        return wrapped

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        tracer = self.tracer
        if type(tracer) is not DeferredTracer or _CONTEXT_VAR is None:
            await self._call_any(scope, receive, send)
            return
        base = self._parent(scope) or _CONTEXT_VAR.get()
        name = self._name(scope)
        if base.get(_SPAN_KEY) is None:  # the common case: a new trace
            span = DeferredSpan(tracer, name, tracer._bits(128) or 1, None, None, SpanKind.SERVER, {},
                                _time_ns())
        else:  # a caller's remote parent, or under a span of this process
            span = tracer.span(name, base, SpanKind.SERVER, {})  # type: ignore[arg-type]
        span.http = (scope.get("method", ""), str(scope.get("path", "")), ())
        attributes = span.attributes

        def on_start(status: int, headers: Any) -> bool:
            attributes["http.response.status_code"] = status
            method, path, _ = span.http
            span.http = (method, path, headers)  # Location (the order id) read if kept
            if status < 400:  # headers searched for problem+json only on an error answer
                return False
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return _is_problem(headers)

        token = _CONTEXT_VAR.set(Context({**base, _SPAN_KEY: span}))
        try:
            await self.app(scope, receive, self._send(send, span, *span.ids(), on_start))
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, redact_text(f"{type(exc).__name__}: {exc}")[:300]))
            raise
        finally:
            _leave(token)
            span.end()

    async def _call_any(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``__call__`` with any OpenTelemetry tracer (an SDK one: the span's API only)."""
        parent = self._parent(scope)
        name = self._name(scope)
        method = scope.get("method", "")
        path = str(scope.get("path", ""))
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes={
            ATTR_RESOURCE: name, "http.request.method": method, "http.route": name.split(" ", 1)[-1],
            "url.path": path})
        ctx = span.get_span_context()
        order_id = _ORDER_PATH.match(path)
        if order_id:
            span.set_attribute(ATTR_ORDER_ID, order_id.group(1))

        def on_start(status: int, headers: Any) -> bool:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            if not order_id:
                loc = next((v for k, v in headers if k.lower() == b"location"), b"")
                lm = _ORDER_PATH.match(loc.decode("latin-1"))
                if lm:
                    span.set_attribute(ATTR_ORDER_ID, lm.group(1))
            return _is_problem(headers)

        token = _enter(span, parent)
        try:
            await self.app(scope, receive, self._send(send, span, ctx.trace_id, ctx.span_id, on_start))
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, redact_text(f"{type(exc).__name__}: {exc}")[:300]))
            raise
        finally:
            _leave(token)
            span.end()

    @staticmethod
    async def _send_problem(send: Any, start: dict[str, Any], body: bytes, tid: str,
                            span: trace.Span) -> None:
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            doc["trace_id"] = tid
            if doc.get("rule") and doc.get("rule_type") and start.get("status") in (429, 503):
                # the guardians refused the request (at the door or deep inside): name the rule
                span.set_attribute(ATTR_DECISION, "blocked")
                span.set_attribute(ATTR_RULE, str(doc["rule"]))
                span.set_attribute(ATTR_RULE_TYPE, str(doc["rule_type"]))
                span.set_attribute(ATTR_REASON, str(doc.get("detail", "")))
            body = json.dumps(doc, default=str).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
