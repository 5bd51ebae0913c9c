"""The guard span: ``TracingGuard`` wraps the guardians as the trading core's ``Guard`` port."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from common.redact import redact_text
from tradeguard.tracing.conventions import (
    ATTR_DECISION,
    ATTR_PEER,
    ATTR_REASON,
    ATTR_RESOURCE,
    ATTR_RULE,
    ATTR_RULE_TYPE,
    ATTR_WAIT_MS,
    PAYMENT_CHARGE,
)
from tradeguard.tracing.spans import (
    _CONTEXT_VAR,
    _SPAN_KEY,
    DeferredSpan,
    DeferredTracer,
    _attrs,
    _enter,
    _leave,
    _perf_ns,
    _time_ns,
)

T = TypeVar("T")


class GuardPort(Protocol):
    def guard(self, resource: str, call: Callable[[], T], *, args: Mapping[str, str] | None = None,
              fallback: Callable[[BaseException], T] | None = None) -> T: ...


def _is_blocked(exc: BaseException) -> bool:
    from guardians.errors import Blocked

    return isinstance(exc, Blocked)


def _mark_blocked(span: trace.Span, exc: BaseException, decision: str) -> None:
    span.set_attribute(ATTR_DECISION, decision)
    span.set_attribute(ATTR_RULE, str(getattr(exc, "rule_name", "") or ""))
    span.set_attribute(ATTR_RULE_TYPE, str(getattr(exc, "kind", "") or ""))
    span.set_attribute(ATTR_REASON, redact_text(str(getattr(exc, "detail", "") or exc)))


def _error_status(exc: BaseException) -> Status:
    return Status(StatusCode.ERROR, redact_text(f"{type(exc).__name__}: {exc}"))


def _traced_fallback(
    span: trace.Span, fallback: Callable[[BaseException], T]
) -> Callable[[BaseException], T]:
    """``fallback`` marking ``span``: degraded when it answers a block, else the error's status."""

    def traced_fallback(exc: BaseException) -> T:
        if _is_blocked(exc):
            _mark_blocked(span, exc, "degraded")
        else:
            span.set_status(_error_status(exc))
        return fallback(exc)

    return traced_fallback


class TracingGuard:
    """The trading core's ``Guard`` port: a span around the wrapped guard (the guardians engine).

    The decision is read from what the engine does: ``call`` ran → passed (``wait_ms`` = time from
    entering the guard to the call, i.e. the queueing a rate rule imposed); the fallback ran with a
    ``Blocked`` → degraded; a ``Blocked`` raised → blocked. Exceptions of the call, and a charge
    answered ``ok=False`` (not queued), set the span's status to ERROR.
    """

    def __init__(self, inner: GuardPort, tracer: trace.Tracer) -> None:
        self.inner = inner
        self.tracer = tracer

    def __getattr__(self, name: str) -> Any:  # the engine's other methods (stats, resources…)
        return getattr(self.inner, name)

    def guard(self, resource: str, call: Callable[[], T], *, args: Mapping[str, str] | None = None,
              fallback: Callable[[BaseException], T] | None = None) -> T:
        tracer = self.tracer
        if type(tracer) is not DeferredTracer or _CONTEXT_VAR is None:
            return self._guard_any(resource, call, args, fallback)
        # The hot path (every guarded call of every request): the deferred span made, attached and
        # ended inline — no call into the tracer, ``_enter`` / ``_leave`` or ``end``.
        if resource == PAYMENT_CHARGE:
            kind, attrs = SpanKind.CLIENT, {ATTR_RESOURCE: resource, ATTR_PEER: "payment-gateway"}
        else:
            kind, attrs = SpanKind.INTERNAL, {ATTR_RESOURCE: resource}
        base = _CONTEXT_VAR.get()
        parent = base.get(_SPAN_KEY)
        if type(parent) is DeferredSpan and not parent.mixed:  # under the route span (or another guard)
            root = parent.root or parent
            span = DeferredSpan(tracer, resource, parent.trace_id, parent, root, kind, attrs, _time_ns())
        else:  # a new trace, a caller's remote parent, or under another tracer's span
            span = tracer.span(resource, base, kind, attrs)  # type: ignore[arg-type]
            root = span.root
        if args:
            span.args = args  # expanded only if the trace is kept
        entered = 0

        def traced_call() -> T:
            nonlocal entered
            if not entered:
                entered = _perf_ns()
            return call()

        traced_fallback = _traced_fallback(span, fallback) if fallback is not None else None

        token = _CONTEXT_VAR.set(Context({**base, _SPAN_KEY: span}))
        try:
            t0 = _perf_ns()
            try:
                result = self.inner.guard(resource, traced_call, args=args, fallback=traced_fallback)
            except BaseException as exc:
                if _is_blocked(exc):
                    _mark_blocked(span, exc, "blocked")
                else:
                    span.set_status(_error_status(exc))
                raise
            if entered:
                attrs[ATTR_WAIT_MS] = (entered - t0) // 1000 / 1000  # ms to the µs (round() formats a string)
            attrs.setdefault(ATTR_DECISION, "passed")
            if getattr(result, "ok", None) is False and not getattr(result, "queued", False):
                span.set_status(Status(StatusCode.ERROR, redact_text(str(getattr(result, "reason", "")))))
            return result
        finally:
            _leave(token)
            span.end_time = _time_ns()
            if root is not None:
                root.ended.append(span)  # dropped if the trace was decided already (_CLOSED)
            else:
                tracer.on_end(span)  # a root (no request around it) or a mixed span

    def _guard_any(self, resource: str, call: Callable[[], T], args: Mapping[str, str] | None,
                   fallback: Callable[[BaseException], T] | None) -> T:
        """``guard`` with any OpenTelemetry tracer (an SDK one: the span's API only)."""
        tracer = self.tracer
        if resource == PAYMENT_CHARGE:
            kind, attrs = SpanKind.CLIENT, {ATTR_RESOURCE: resource, ATTR_PEER: "payment-gateway"}
        else:
            kind, attrs = SpanKind.INTERNAL, {ATTR_RESOURCE: resource}
        span = tracer.start_span(resource, kind=kind, attributes=attrs)
        for key, value in (args or {}).items():
            span.set_attribute(f"tradeguard.arg.{key}", str(value))
        entered = 0

        def traced_call() -> T:
            nonlocal entered
            if not entered:
                entered = _perf_ns()
            return call()

        traced_fallback = _traced_fallback(span, fallback) if fallback is not None else None

        token = _enter(span)
        try:
            t0 = _perf_ns()
            try:
                result = self.inner.guard(resource, traced_call, args=args, fallback=traced_fallback)
            except BaseException as exc:
                if _is_blocked(exc):
                    _mark_blocked(span, exc, "blocked")
                else:
                    span.set_status(_error_status(exc))
                raise
            if entered:
                span.set_attribute(ATTR_WAIT_MS, round((entered - t0) / 1e6, 3))
            if not _attrs(span).get(ATTR_DECISION):  # type: ignore[arg-type]
                span.set_attribute(ATTR_DECISION, "passed")
            if getattr(result, "ok", None) is False and not getattr(result, "queued", False):
                span.set_status(Status(StatusCode.ERROR, redact_text(str(getattr(result, "reason", "")))))
            return result
        finally:
            _leave(token)
            span.end()
