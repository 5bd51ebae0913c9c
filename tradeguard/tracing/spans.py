"""Deferred spans: the OpenTelemetry API's ``Span`` without an SDK span until its trace is kept,
and the fast path into OpenTelemetry's current context."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode

from common.redact import redact_text
from tradeguard.tracing.conventions import (
    _KIND_NAMES,
    _ORDER_PATH,
    _REFUSED,
    ATTR_DECISION,
    ATTR_ORDER_ID,
    ATTR_RESOURCE,
    SpanRecord,
)

log = logging.getLogger(__name__)


_UNSET = Status(StatusCode.UNSET)
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("tradeguard")
_time_ns = time.time_ns
_perf_ns = time.perf_counter_ns
# OpenTelemetry's context key of the current span, learnt once through the public API
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))


def _context_var() -> ContextVar[Context] | None:
    """The ``ContextVar`` behind OpenTelemetry's default (contextvars) runtime context, or None if
    another runtime context is configured (``OTEL_PYTHON_CONTEXT``) or its internals change."""
    var = getattr(getattr(context_api, "_RUNTIME_CONTEXT", None), "_current_context", None)
    return var if isinstance(var, ContextVar) else None


_CONTEXT_VAR = _context_var()
# The current OpenTelemetry context's getter for the hot paths (a DB statement, a Redis command, a
# new span's parent): that ContextVar's ``get``, one C call, where the API's ``get_current_span``
# is a chain of ~5 Python calls. OpenTelemetry's context stays the one source of the current span.
_current_context: Callable[[], Mapping[str, Any]] = (
    _CONTEXT_VAR.get if _CONTEXT_VAR is not None else context_api.get_current)


def _enter(span: trace.Span, base: context_api.Context | None = None) -> Any:
    """Make ``span`` current in OpenTelemetry's context (logs, baggage, any OpenTelemetry user see
    it), on top of ``base`` (default: the current context). Returns the token for ``_leave``.

    With the default runtime context this is that ``ContextVar``'s own ``set`` / ``reset`` (what
    the API's ``attach`` / ``detach`` end in, after two Python calls each): the span stays in
    OpenTelemetry's context, so a span of another tracer started inside is parented to it, and
    ``trace.get_current_span()`` (the log lines' trace and span ids) sees it."""
    ctx = Context({**(_current_context() if base is None else base), _SPAN_KEY: span})
    if _CONTEXT_VAR is not None:
        return _CONTEXT_VAR.set(ctx)
    return context_api.attach(ctx)


def _leave(token: Any) -> None:
    """Undo ``_enter`` (like the API's ``detach``: a token of another context is logged, not raised)."""
    if _CONTEXT_VAR is not None and type(token) is Token:
        try:
            _CONTEXT_VAR.reset(token)
            return
        except ValueError:
            log.debug("tracing: context token of another context not reset")
            return
    context_api.detach(token)


class _Closed:
    """``ended`` / ``calls`` of a decided trace's root: a span that outlived its root, a call made
    after it, are dropped."""

    __slots__ = ()

    def append(self, item: Any) -> None:
        pass


_CLOSED = _Closed()


class DeferredSpan(trace.Span):
    """A recording span of the OpenTelemetry API whose SDK span is built only if its trace is kept.

    The SDK's ``Span`` is made for head sampling: every span it records pays for attribute
    validation under a lock, a ``BoundedAttributes``, its events and links lists and, at ``end``,
    a ``ReadableSpan`` copy handed to each processor. With tail sampling ~99 % of traces are
    forgotten at their root's end, so that price bought nothing for them (``bench trace``:
    a third of tracing's cost per ``POST /orders`` after the route middleware). A deferred span
    keeps name, ids, times, status and a plain attribute dict; ``TailSamplingProcessor`` turns the
    spans of a kept trace into SDK ``ReadableSpan`` s (``readable``), attributes cleaned by the SDK's
    own ``BoundedAttributes`` then, so exporters see exactly what an SDK span would give them.

    What a forgotten trace never pays for (lazy): its ``SpanContext`` objects and the span ids of
    its inner spans (made by ``get_span_context``, i.e. for the route span's ``traceparent``, a log
    line or a kept trace); ``args``, a guarded call's arguments, expanded into ``tradeguard.arg.*``
    attributes; ``http``, the route span's request (method, path, ``Location``), expanded into the
    HTTP attributes and the order id; its dependency calls, kept as plain tuples (see ``calls``).

    The trace is held by its *local root* (no parent, or a caller's remote one; ``root`` None): an
    inner span (``root``: that local root) that ends joins the root's ``ended`` list, a dependency
    call its ``calls`` list (appends: atomic, no lock, no lookup by trace id), and the root's own
    ``end`` hands the whole trace to the tail sampler at once, which then closes both lists
    (``_CLOSED``: what arrives later is dropped) — so that a trace leaves no reference cycle behind
    (root → its lists → its spans → root) and is freed by reference counting, not left to the
    cyclic GC: cyclic garbage on every request was ~20 objects more per order for the collector to
    find, ~25 % more young collections. A deferred span under a local span of another tracer (an
    SDK span) is ``mixed``: it goes to the sampler on its own, buffered by trace id like that
    tracer's spans.
    """

    __slots__ = (
        "_ctx",
        "_parent",
        "_tracer",
        "args",
        "attributes",
        "blocked",
        "calls",
        "end_time",
        "ended",
        "error",
        "events",
        "http",
        "kind",
        "mixed",
        "name",
        "root",
        "span_id",
        "start_time",
        "status",
        "trace_id",
    )

    def __init__(self, tracer: DeferredTracer, name: str, trace_id: int,
                 parent: DeferredSpan | trace.SpanContext | None, root: DeferredSpan | None, kind: SpanKind,
                 attributes: dict[str, Any], start_time: int, mixed: bool = False) -> None:
        """``parent``: the parent deferred span, or a remote / other tracer's parent's context, or None
        (a new trace). ``root``: the local root of the parent's trace, None if this span is one.
        ``mixed``: under a local span of another tracer (no root, no lists)."""
        self._tracer = tracer
        self.name = name
        self.trace_id = trace_id
        self.span_id = 0  # made when first needed
        self._ctx: trace.SpanContext | None = None
        self._parent = parent
        self.kind = kind
        self.attributes = attributes
        self.status = _UNSET
        self.start_time = start_time
        self.end_time: int | None = None
        self.root = root
        self.mixed = mixed
        if root is None:  # a local root (holds its trace) or a mixed span: carries its trace's flags
            self.error = self.blocked = False
            if not mixed:
                self.ended: Any = []
                self.calls: Any = []
        # unset until used (read with getattr): args, http, events; ended, calls, error, blocked of
        # an inner span — every store counts on a path taken ~3 times per request

    @property
    def resource(self) -> Resource:
        return self._tracer.resource

    @property
    def context(self) -> trace.SpanContext:
        return self.get_span_context()

    @property
    def parent(self) -> trace.SpanContext | None:
        p = self._parent
        return p.get_span_context() if type(p) is DeferredSpan else p

    def ids(self) -> tuple[int, int]:
        """(trace id, span id), the span id made now if it was not yet."""
        if not self.span_id:
            self.span_id = self._tracer._bits(64) or 1
        return self.trace_id, self.span_id

    def get_span_context(self) -> trace.SpanContext:
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = trace.SpanContext(*self.ids(), False, _SAMPLED)
        return ctx

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self.end_time is None:
            self.attributes[key] = value
            if key == ATTR_DECISION and value in _REFUSED:
                self._flag_blocked()

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self.end_time is None:
            self.attributes.update(attributes)
            if attributes.get(ATTR_DECISION) in _REFUSED:
                self._flag_blocked()

    # The trace's outcome flags live on its local root (or a mixed span): set as it happens, so the
    # tail sampler's decision is O(1) — no walk over the trace's spans and their attributes.
    def _flag_blocked(self) -> None:
        root = self.root
        (self if root is None else root).blocked = True

    def _flag_error(self) -> None:
        root = self.root
        (self if root is None else root).error = True

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None,
                  timestamp: int | None = None) -> None:
        if self.end_time is None:
            events = getattr(self, "events", None)
            if events is None:
                events = self.events = []
            events.append((name, dict(attributes or {}), timestamp or _time_ns()))

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # the SDK's rules: OK is final, UNSET is ignored
        if self.end_time is not None or self.status.status_code is StatusCode.OK:
            return
        new = status if isinstance(status, Status) else Status(status, description)
        if new.status_code is not StatusCode.UNSET:
            self.status = new
            if new.status_code is StatusCode.ERROR:
                self._flag_error()

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        import traceback

        kind = type(exception)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", ""):
            name = f"{kind.__module__}.{name}"
        self.add_event("exception", {"exception.type": name, "exception.message": str(exception),
                                     "exception.stacktrace": "".join(traceback.format_exception(exception)),
                                     "exception.escaped": str(escaped), **(attributes or {})}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:
            return
        self.end_time = end_time or _time_ns()
        root = self.root
        if root is None:
            self._tracer.on_end(self)  # a local root: its trace is decided now (or a mixed span)
        else:
            root.ended.append(self)  # dropped if the trace was decided already (_CLOSED)

    def all_attributes(self) -> dict[str, Any]:
        """Its attributes with the deferred ones expanded: the route's HTTP request and order id
        (``http``), a guarded call's arguments (``args``)."""
        attrs: dict[str, Any] = {}
        http: tuple[str, str, Any] | None = getattr(self, "http", None)
        if http is not None:
            method, path, location = http  # location: bytes, or the response's headers
            if not isinstance(location, bytes):
                location = next((v for k, v in location if k.lower() == b"location"), b"")
            attrs.update({ATTR_RESOURCE: self.name, "http.request.method": method,
                          "http.route": self.name.split(" ", 1)[-1], "url.path": path})
            m = _ORDER_PATH.match(path)
            if m is None and location:
                m = _ORDER_PATH.match(location.decode("latin-1"))
            if m:
                attrs[ATTR_ORDER_ID] = m.group(1)
        attrs.update(self.attributes)
        for key, value in (getattr(self, "args", None) or {}).items():
            attrs[f"tradeguard.arg.{key}"] = str(value)
        return attrs

    def readable(self) -> ReadableSpan:
        """The SDK span of this one (a kept trace's), attributes and events cleaned by the SDK."""
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import Event

        events = [Event(n, BoundedAttributes(attributes=a, immutable=True), timestamp=ts)
                  for n, a, ts in getattr(self, "events", None) or ()]
        return ReadableSpan(name=self.name, context=self.get_span_context(), parent=self.parent,
                            resource=self.resource, events=events,
                            attributes=BoundedAttributes(attributes=self.all_attributes(), immutable=True),
                            kind=self.kind, status=self.status, start_time=self.start_time,
                            end_time=self.end_time, instrumentation_scope=self._tracer.scope)

    def record(self, instance: str = "") -> SpanRecord:
        """The span store's row of this span (as ``span_record(self.readable())`` gives it, without
        building the SDK span: sequences stored as lists, other values as the store's JSON
        encoder writes them)."""
        trace_id, span_id = self.ids()
        p = self._parent
        parent_id = p.ids()[1] if type(p) is DeferredSpan else (p.span_id if p is not None else None)
        attrs = {k: (list(v) if isinstance(v, tuple | list) else v)
                 for k, v in self.all_attributes().items() if v is not None}
        status = self.status
        return SpanRecord(f"{trace_id:032x}", f"{span_id:016x}",
                          f"{parent_id:016x}" if parent_id is not None else None, self.name,
                          _KIND_NAMES[self.kind], int(self.start_time or 0), int(self.end_time or 0),
                          "error" if status.status_code is StatusCode.ERROR else "ok",
                          status.description or "", attrs, instance)


class _Current:
    """``start_as_current_span`` of ``DeferredTracer``: attach, and on exit detach and end (the SDK's
    ``use_span`` semantics for an exception: recorded as an event and/or status ERROR if asked)."""

    __slots__ = ("end_on_exit", "record_exception", "set_status", "span", "token")

    def __init__(self, span: DeferredSpan, record_exception: bool, set_status: bool,
                 end_on_exit: bool) -> None:
        self.span, self.record_exception, self.set_status = span, record_exception, set_status
        self.end_on_exit = end_on_exit

    def __enter__(self) -> DeferredSpan:
        self.token = _enter(self.span)
        return self.span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _leave(self.token)
        if exc is not None and isinstance(exc, Exception):
            if self.record_exception:
                self.span.record_exception(exc, escaped=True)
            if self.set_status:
                message = redact_text(f"{type(exc).__name__}: {exc}")[:300]
                self.span.set_status(Status(StatusCode.ERROR, message))
        if self.end_on_exit:
            self.span.end()


class DeferredTracer(trace.Tracer):
    """A tracer of the OpenTelemetry API that makes ``DeferredSpan`` s and hands each ended local root
    (with its trace: ``ended``, ``calls``) to ``on_end`` — the tail sampler's, which also takes the
    spans with no root one by one. Parents come from the given or current context (a caller's
    remote ``traceparent`` included); ids are random like the SDK's ``RandomIdGenerator``."""

    def __init__(self, on_end: Callable[[DeferredSpan], None], resource: Resource,
                 scope: InstrumentationScope = _SCOPE) -> None:
        self.on_end = on_end
        self.resource = resource
        self.scope = scope
        self._bits = random.Random().getrandbits

    def start_span(self, name: str, context: context_api.Context | None = None,
                   kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None,
                   links: Any = None, start_time: int | None = None, record_exception: bool = True,
                   set_status_on_exception: bool = True) -> DeferredSpan:
        span = self.span(name, context, kind, dict(attributes) if attributes else {}, start_time)
        if attributes and attributes.get(ATTR_DECISION) in _REFUSED:
            span._flag_blocked()
        return span

    def span(self, name: str, context: context_api.Context | None, kind: SpanKind, attributes: dict[str, Any],
             start_time: int | None = None) -> DeferredSpan:
        """``start_span`` without its copy of ``attributes`` (the span owns the dict given)."""
        start = start_time or _time_ns()
        parent = (_current_context() if context is None else context).get(_SPAN_KEY)
        if type(parent) is DeferredSpan:
            if parent.mixed:
                return DeferredSpan(self, name, parent.trace_id, parent, None, kind, attributes, start, True)
            return DeferredSpan(self, name, parent.trace_id, parent, parent.root or parent, kind, attributes,
                                start)
        pctx = parent.get_span_context() if isinstance(parent, trace.Span) else None
        if pctx is None or not pctx.is_valid:  # a new trace
            return DeferredSpan(self, name, self._bits(128) or 1, None, None, kind, attributes, start)
        # a caller's remote parent: this span is the local root; a local span of another tracer: mixed
        return DeferredSpan(self, name, pctx.trace_id, pctx, None, kind, attributes, start,
                            mixed=not pctx.is_remote)

    def start_as_current_span(self, name: str, context: context_api.Context | None = None,  # type: ignore[override]
                              kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None,
                              links: Any = None, start_time: int | None = None, record_exception: bool = True,
                              set_status_on_exception: bool = True, end_on_exit: bool = True) -> _Current:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        return _Current(span, record_exception, set_status_on_exception, end_on_exit)


def _attrs(span: ReadableSpan) -> Mapping[str, Any]:
    """A span's attributes as a plain mapping. The SDK's ``BoundedAttributes`` answers ``in`` and
    ``get`` for a missing key by raising and catching ``KeyError`` (``Mapping``'s defaults): read the
    dict behind it (an ended span's ``attributes`` is a read-only proxy of them), which every ended
    span's decision looks into several times; any other span: its ``attributes``."""
    if type(span) is DeferredSpan:
        return span.attributes
    plain = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(plain, dict):
        return plain
    return span.attributes or {}
