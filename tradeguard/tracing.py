"""Call-chain tracing of a node with OpenTelemetry: spans, propagation, tail sampling, export.

What a request to a node becomes (``wire_tracing`` in ``tradeguard.bootstrap`` plugs it in):

- the **route span** (SERVER): ``RouteSpanMiddleware``, pure ASGI, outermost, named like the
  guardians' route resource (``POST /orders/{order_id}/pay``); it continues a caller's W3C
  ``traceparent`` (global propagator) and puts ``X-Trace-Id`` and ``traceparent`` on every response,
  the ``trace_id`` member in every problem+json body (whoever wrote it: the core's handlers, the
  guardians' ``Blocked`` handler or ``GuardMiddleware``'s early answer), the order id and, for a
  request the guardians refused at the door, the rule that blocked it as span attributes. It
  replaces ``opentelemetry-instrumentation-asgi``'s middleware, whose generic per-request work
  (~15 semantic-convention attributes, URL and header decoding, duration metrics) cost ~8× as
  much (see the class);
- a **guard span** per guarded resource (``order.place``, ``inventory.reserve``, ``payment.charge``…):
  ``TracingGuard`` wraps the guardians engine as the trading core's ``Guard`` port, so the core
  never imports OpenTelemetry. Attributes: ``tradeguard.guard.decision`` (passed | blocked |
  degraded), ``.rule``, ``.rule_type``, ``.reason``, ``.wait_ms`` (queueing before the call ran).
  Those spans are the capability spans of order placement and payment; ``payment.charge`` is a
  CLIENT span to the payment gateway (``peer.service``);
- **dependency calls** — database statements on the trading DB (``StatementRecorder``), Redis
  commands of the guardians' cluster clients (``instrument_redis``): recorded as plain tuples on
  their trace's local root span (timing and the statement; named and described only if kept) and
  built into CLIENT spans only when their trace is kept.
  ``opentelemetry-instrumentation-sqlalchemy``'s per-statement SDK span was the
  largest share of tracing's cost on ``POST /orders`` (py-spy: ~60 % of it, ~10 statements per
  order), paid for the ~99 % of traces then forgotten. Writes of the outbox flusher to the metric
  store: a span per batch (``TracedMetricStore``), a trace of their own;

Head or tail sampling — tail, decided in the node. We must keep every error, every blocked call
and every request slower than its resource's recent p99; none of that is known when the request
starts (a head sampler sees only the route and the caller's flag), so a head decision at 1 % would
lose 99 % of exactly the requests on-call needs. Every span is therefore recorded, but cheaply:
the route and guard spans are ``DeferredSpan`` s of ``DeferredTracer`` (the OpenTelemetry API's
``Span``: ids, times, status and a plain attribute dict, no SDK span; ``SpanContext`` s, inner span
ids, HTTP and argument attributes made only if needed), the many dependency calls plain tuples,
all held by the trace's *local root* span until it ends. ``TailSamplingProcessor`` then decides:
error > blocked > slow > sampled at ``TRADEGUARD_TRACE_SAMPLE``, in O(1) (the spans flag their root
as they turn ERROR or blocked; the slow rule reads a p99 kept current by ``SlowThresholds``). A kept
trace is queued as its raw parts and built on the export thread (``KeptTrace``: SDK
``ReadableSpan`` s, attributes cleaned by the SDK, for OTLP; span-store rows straight from the
deferred spans for the embedded store); the rest is forgotten having cost a few list appends and
dict writes (``bench trace``: the node's CPU per order, and an open-loop p50 at 70 % of capacity,
tracing off vs default). The decision is local to the node: a trace that continues a caller's
``traceparent`` is judged by this node's part of it (the caller's own sampler decides its part).

"Slow" is judged on the request (the root span, against its route resource's p99), not on each
guarded resource inside it: a p99 rule per inner resource would keep the union of their slowest
1 %s (several % of all traces for the same on-call value), and a request that was not slow is not
what the rule is for. In steady load about 1 % of requests are kept as slow; right after the load
rises (a surge, or ``bench trace`` switching a node between its phases) more are, until the p99 of
the last 1,000 requests has caught up — those are exactly the requests that got slower.

Blocked calls under a flood: every blocked call is *counted* (``decisions.blocked``), but full traces
are built and stored for at most ``blocked_per_s`` (default 5) per second per (resource, rule); the
rest are counted as ``blocked_over_budget`` and forgotten. In a 50× surge a node refuses hundreds of
requests a second, all alike; keeping each one's trace put hundreds of SQLite writes a second on the
node exactly when its CPU is scarcest (``bench door``: ~40 % of a refusal's CPU), for traces that
tell on-call nothing the first few of each second did not. This is the rate-limiting sampler of
mature tracers (Jaeger's) applied to the blocked outcome only; errors and slow requests are never
budgeted. ``blocked_per_s=None`` keeps every blocked trace (the old behaviour).

Where kept traces go: ``ExportQueue``, a bounded queue (oldest dropped first and counted) drained
by one daemon thread, so neither a full store nor an OTLP collector that is down ever blocks or
fails a request; drops are in ``/ops/health`` (``stores.tracing``). The sink is OTLP/HTTP when
``TRADEGUARD_OTLP_ENDPOINT`` is set, else the embedded ``SpanStore``: one SQLite file
``var/traces.db`` shared by every node of the host (WAL; the console reads all nodes' traces
there), bounded by trace count and age, the oldest pruned first and counted.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import sqlite3
import threading
import time
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode

from common.redact import redact_text

log = logging.getLogger(__name__)

T = TypeVar("T")

PAYMENT_CHARGE = "payment.charge"  # the guarded call to the payment gateway (domain.ports.PAYMENT_CHARGE)
OUTCOMES = ("error", "blocked", "slow", "sampled")
_REFUSED = frozenset(("blocked", "degraded"))  # guard decisions that keep a trace as "blocked"
BLOCKED_PER_S = 5.0  # kept blocked traces per second per (resource, rule); the rest only counted
ATTR_DECISION = "tradeguard.guard.decision"
ATTR_RULE = "tradeguard.guard.rule"
ATTR_RULE_TYPE = "tradeguard.guard.rule_type"
ATTR_REASON = "tradeguard.guard.reason"
ATTR_WAIT_MS = "tradeguard.guard.wait_ms"
ATTR_RESOURCE = "tradeguard.resource"
ATTR_ORDER_ID = "tradeguard.order_id"
ATTR_PEER = "peer.service"


def trace_id_hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


def span_id_hex(span_id: int) -> str:
    return f"{span_id:016x}"


_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def door_trace_ids(
    scope: Mapping[str, Any], bits: Callable[[int], int] = random.getrandbits
) -> tuple[str, str]:
    """(trace_id, span_id) for a request refused at the door, where no span is made: the caller's
    trace continues when it sent a valid ``traceparent`` (W3C), else a new random trace id. The
    refusal's trace is then not stored (beyond the tracer's per-rule budget of blocked traces,
    which ``RefusalBudget`` sends inside), like any trace the sampler drops."""
    for key, value in scope.get("headers") or ():
        if key == b"traceparent":
            m = _TRACEPARENT.match(value.strip().lower())
            if m is not None and m.group(1) != b"0" * 32:
                return m.group(1).decode(), span_id_hex(bits(64) or 1)
            break
    return trace_id_hex(bits(128) or 1), span_id_hex(bits(64) or 1)


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as hex, or None outside a valid span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return trace_id_hex(ctx.trace_id), span_id_hex(ctx.span_id)


# ============================================================================ deferred spans
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


# ============================================================================ the guard span
class GuardPort(Protocol):
    def guard(self, resource: str, call: Callable[[], T], *, args: Mapping[str, str] | None = None,
              fallback: Callable[[BaseException], T] | None = None) -> T: ...


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


# ============================================================================ tail sampling
class _Window:
    """One resource's recent durations, in arrival order and sorted; its current p99."""

    __slots__ = ("limit", "ordered", "recent", "seen")

    def __init__(self) -> None:
        self.recent: deque[float] = deque()
        self.ordered: list[float] = []
        self.limit: float | None = None
        self.seen = 0


class SlowThresholds:
    """Per-resource "slow": over a fixed threshold if one is given, else over the resource's recent
    p99 — the nearest-rank 99th percentile (``common.stats.percentile``) of its last ``window``
    durations, re-read every ``every`` observations (default: each) once ``min_count`` are known;
    before that nothing counts as slow.

    O(log n) per observation, the threshold always current: each window is held in arrival order
    (a deque: which duration leaves) and sorted (a list kept sorted with ``bisect``: one insert and
    one delete, C memmoves of a few KB), so its p99 is one index away. The former re-sort of the
    whole window every 50 observations cost more per request (~1,000·log 1,000 comparisons / 50)
    and judged up to 50 requests against a stale threshold after the load changed."""

    def __init__(self, fixed_ms: Mapping[str, float] | None = None, *, window: int = 1000,
                 every: int = 1, min_count: int = 100) -> None:
        if window < 1 or every < 1 or min_count < 1:
            raise ValueError("window, every and min_count must be ≥ 1")
        self.fixed_ms = dict(fixed_ms or {})
        self.window, self.every, self.min_count = window, every, min_count
        self._windows: dict[str, _Window] = {}

    def threshold(self, resource: str) -> float | None:
        if resource in self.fixed_ms:
            return self.fixed_ms[resource]
        w = self._windows.get(resource)
        return w.limit if w is not None else None

    def observe(self, resource: str, duration_ms: float) -> bool:
        """Whether ``duration_ms`` is slow for ``resource`` (judged before it joins the window)."""
        fixed = self.fixed_ms
        if fixed and resource in fixed:
            return duration_ms > fixed[resource]
        w = self._windows.get(resource)
        if w is None:
            w = self._windows[resource] = _Window()
        limit = w.limit
        w.recent.append(duration_ms)
        ordered = w.ordered
        insort(ordered, duration_ms)
        if len(ordered) > self.window:
            del ordered[bisect_left(ordered, w.recent.popleft())]
        w.seen += 1
        n = len(ordered)
        if n >= self.min_count and w.seen % self.every == 0:
            w.limit = ordered[math.floor(n * 99.0 / 100.0 + 0.5) - 1]  # percentile(…, 99)'s rank
        return limit is not None and duration_ms > limit


class CallRecord(NamedTuple):
    """A dependency call (a DB statement, a Redis command) recorded outside a deferred span's trace
    (under another tracer's span): plain values; a CLIENT span only if its trace is kept. Under a
    deferred span a call is cheaper still: a tuple in its root's ``calls`` (``_call_span``)."""

    parent: trace.SpanContext
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    error: str | None = None


_CALL_SCOPE = InstrumentationScope("tradeguard.calls")


def call_span(call: CallRecord, resource: Resource, rng: random.Random) -> ReadableSpan:
    """The CLIENT span of a recorded call, child of the span that was current when it ran."""
    p = call.parent
    ctx = trace.SpanContext(p.trace_id, rng.getrandbits(64) or 1, is_remote=False,
                            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    status = Status(StatusCode.ERROR, call.error) if call.error is not None else Status(StatusCode.UNSET)
    return ReadableSpan(name=call.name, context=ctx, parent=p, resource=resource,
                        attributes=dict(call.attributes),
                        kind=SpanKind.CLIENT, status=status, start_time=call.start_ns, end_time=call.end_ns,
                        instrumentation_scope=_CALL_SCOPE)


def _call_span(call: tuple[Any, ...], resource: Resource, rng: random.Random) -> ReadableSpan:
    """The CLIENT span of a call in a deferred root's ``calls``: ``(span, describe, what, start_ns,
    end_ns, error)``, named and given its attributes by ``describe(what)`` only now."""
    span, describe, what, start_ns, end_ns, error = call
    name, attributes = describe(what)
    record = CallRecord(span.get_span_context(), name, start_ns, end_ns, attributes, error)
    return call_span(record, resource, rng)


def _call_record(call: tuple[Any, ...], rng: random.Random, instance: str) -> SpanRecord:
    """The span store's row of a call tuple (as ``span_record(_call_span(…))``, without the SDK span)."""
    span, describe, what, start_ns, end_ns, error = call
    name, attributes = describe(what)
    trace_id, parent_id = span.ids()
    return SpanRecord(f"{trace_id:032x}", f"{rng.getrandbits(64) or 1:016x}", f"{parent_id:016x}", name,
                      "client", start_ns, end_ns, "ok" if error is None else "error", error or "",
                      dict(attributes), instance)


class KeptTrace:
    """A kept trace on its way to the sink. Built from its raw parts (``parts``: resource, the spans —
    deferred or the SDK's —, call records, call tuples, the id generator) only when read, i.e. on
    the export thread: the request that ended the trace pays for the decision and one queue append.
    ``spans``: SDK ``ReadableSpan`` s (OTLP, tests); ``records``: the span store's rows, made from
    deferred spans and call tuples directly (no SDK span, no ``BoundedAttributes`` in between)."""

    __slots__ = ("_parts", "_spans", "outcome")

    def __init__(self, spans: list[ReadableSpan] | None = None, outcome: str = "", *,
                 parts: tuple[Resource, Sequence[Any], Sequence[CallRecord], Sequence[tuple[Any, ...]],
                              random.Random] | None = None) -> None:
        self._spans = spans if spans is not None or parts is not None else []
        self._parts = parts
        self.outcome = outcome

    @property
    def spans(self) -> list[ReadableSpan]:
        if self._spans is None:
            assert self._parts is not None
            resource, spans, records, calls, rng = self._parts
            built: list[ReadableSpan] = [s.readable() if type(s) is DeferredSpan else s for s in spans]
            built += [call_span(c, resource, rng) for c in records]
            built += [_call_span(c, resource, rng) for c in calls]
            self._spans = built
        return self._spans

    def records(self, instance: str = "") -> list[SpanRecord]:
        if self._spans is not None or self._parts is None:
            return [span_record(s, instance) for s in self.spans]
        resource, spans, records, calls, rng = self._parts
        out = [s.record(instance) if type(s) is DeferredSpan else span_record(s, instance) for s in spans]
        out += [span_record(call_span(c, resource, rng), instance) for c in records]
        out += [_call_record(c, rng, instance) for c in calls]
        return out


class TailSamplingProcessor(SpanProcessor):
    """Decides each trace when its local root ends: keeps it or forgets it.

    Kept: any span with status ERROR or failed call (``error``), any guard decision
    blocked/degraded (``blocked``), a root slower than its resource's threshold (``slow``), else
    with probability ``rate`` (``sampled``). A trace whose root is a bare database statement (a
    scheduled job's query) is kept only on error. ``on_end`` runs on the request's thread: the
    decision, under a lock, then a kept trace's raw parts are queued (``KeptTrace``: built into
    spans or store rows on the export thread); a forgotten one costs nothing more.

    The decision is O(1) for a ``DeferredTracer`` trace: its spans flag their local root as they
    become ERROR or blocked/degraded (and a failed call flags it), so a trace with neither flag goes
    straight to the slow / sampled rules; a flagged one (rare) is confirmed by the walk over its
    spans and calls (``decide``), which also judges any trace with spans of other tracers.

    A ``DeferredTracer`` 's trace arrives whole, with its root (its spans and calls gathered on the
    root). Spans of other tracers (the SDK's, through ``TracerProvider``) arrive one by one and wait
    in ``_pending`` by trace id until their root ends — at most ``max_pending`` traces, the oldest
    dropped first (``pending_dropped``); so do calls recorded under them (``record_call``).

    Blocked traces are kept at most ``blocked_per_s`` per second (a token bucket of that size per
    (resource, rule), refilled by ``clock``, seconds); those over it are counted in
    ``blocked_over_budget`` and forgotten (``blocked`` counts them all). ``None``: keep every one.
    """

    def __init__(self, sink: Callable[[KeptTrace], None], *, rate: float, thresholds: SlowThresholds,
                 rng: Callable[[], float] | None = None, max_pending: int = 10_000,
                 blocked_per_s: float | None = BLOCKED_PER_S,
                 clock: Callable[[], float] | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"trace_sample: must be between 0 and 1, got {rate!r}")
        if blocked_per_s is not None and not blocked_per_s > 0:
            raise ValueError(f"blocked_per_s: must be > 0 (or None for no budget), got {blocked_per_s!r}")
        self.blocked_per_s = blocked_per_s
        self.clock = clock or time.monotonic
        self._budget: dict[tuple[str, str], list[float]] = {}  # (resource, rule) -> [tokens, last refill]
        self.sink = sink
        self.rate = rate
        self.thresholds = thresholds
        self.rng = rng or random.random
        self.max_pending = max_pending
        self._pending: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._calls: dict[int, list[CallRecord]] = {}  # appended without the lock (atomic under the GIL)
        self._lock = threading.Lock()
        self._ids = random.Random()
        self.counts: dict[str, int] = {o: 0 for o in OUTCOMES}
        self.counts.update(traces=0, pending_dropped=0, blocked_over_budget=0)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def record_call(self, call: CallRecord) -> None:
        """A dependency call made under ``call.parent`` (which must belong to a live trace). No lock:
        ``dict.get``, ``dict.__setitem__`` and ``list.append`` are atomic; at worst a race between
        two first calls of one trace loses one record."""
        tid = call.parent.trace_id
        calls = self._calls.get(tid)
        if calls is None:
            calls = self._calls[tid] = []
            if len(self._calls) > self.max_pending:  # roots that never ended: forget the oldest
                try:
                    del self._calls[next(iter(self._calls))]
                except (StopIteration, KeyError, RuntimeError):
                    pass
        calls.append(call)

    def on_end(self, span: ReadableSpan) -> None:
        if type(span) is DeferredSpan and not span.mixed:
            self._end_deferred(span)
            return
        ctx = span.context
        if ctx is None:
            return
        tid = ctx.trace_id
        is_root = span.parent is None or span.parent.is_remote
        with self._lock:
            buf = self._pending.get(tid)
            if buf is None:
                buf = self._pending[tid] = []
                if len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)
                    self.counts["pending_dropped"] += 1
            buf.append(span)
            if not is_root:
                return
            del self._pending[tid]
            calls = self._calls.pop(tid, ())
            self.counts["traces"] += 1
            outcome = self._counted(self.decide(span, buf, calls), span, buf)
        if outcome is not None:
            self.sink(KeptTrace(outcome=outcome, parts=(span.resource, buf, calls, (), self._ids)))

    def _end_deferred(self, root: DeferredSpan) -> None:
        """A deferred local root ended: its trace is its ``ended`` spans, its ``calls`` and, if spans
        of other tracers joined it, what waits for it in ``_pending`` / ``_calls``."""
        spans: list[Any] = root.ended
        calls: list[tuple[Any, ...]] = root.calls
        root.ended = root.calls = _CLOSED  # no cycle left: the trace is freed once decided
        spans.append(root)
        more: Sequence[CallRecord] = ()
        with self._lock:
            walk = root.error or root.blocked
            if self._pending or self._calls:  # spans / calls of other tracers may have joined it
                joined = self._pending.pop(root.trace_id, None)
                more = self._calls.pop(root.trace_id, ())
                if joined:
                    spans = joined + spans
                    walk = True
                walk = walk or bool(more)
            self.counts["traces"] += 1
            if walk:
                outcome = self.decide(root, spans, more, calls)
            else:
                attrs = root.attributes
                bare_statement = "db.system" in attrs or "db.system.name" in attrs
                outcome = None if bare_statement else self._judge(root, attrs)
            outcome = self._counted(outcome, root, spans)
        if outcome is not None:
            self.sink(KeptTrace(outcome=outcome, parts=(root.resource, spans, more, calls, self._ids)))

    def _counted(self, outcome: str | None, root: ReadableSpan, spans: Sequence[ReadableSpan]) -> str | None:
        """Count the decision; a blocked one beyond its budget is forgotten. Under the lock."""
        if outcome is not None:
            self.counts[outcome] += 1
            if outcome == "blocked" and not self._within_budget(root, spans):
                self.counts["blocked_over_budget"] += 1
                return None
        return outcome

    def _within_budget(self, root: ReadableSpan, spans: Sequence[ReadableSpan]) -> bool:
        """Take one token of the blocked budget of this trace's (resource, rule); under the lock."""
        if self.blocked_per_s is None:
            return True
        rule = ""
        for s in spans:
            attrs = _attrs(s)
            if attrs.get(ATTR_DECISION) in ("blocked", "degraded"):
                rule = str(attrs.get(ATTR_RULE) or "")
                break
        key = (str(_attrs(root).get(ATTR_RESOURCE) or root.name), rule)
        now = self.clock()
        bucket = self._budget.get(key)
        if bucket is None:
            if len(self._budget) >= 4096:  # bounded: (resource, rule) pairs come from configuration
                self._budget.clear()
            bucket = self._budget[key] = [self.blocked_per_s, now]
        else:
            bucket[0] = min(self.blocked_per_s, bucket[0] + (now - bucket[1]) * self.blocked_per_s)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def decide(self, root: ReadableSpan, spans: Sequence[ReadableSpan],
               calls: Sequence[CallRecord] = (), call_tuples: Sequence[tuple[Any, ...]] = ()) -> str | None:
        """The outcome of a whole trace, walking its spans and calls (see the class)."""
        error = blocked = False
        for s in spans:
            if s.status.status_code is StatusCode.ERROR:
                error = True
            if (s.attributes if type(s) is DeferredSpan else _attrs(s)).get(ATTR_DECISION) in _REFUSED:
                blocked = True
        if error or any(c.error is not None for c in calls) or any(c[5] is not None for c in call_tuples):
            return "error"
        attrs = _attrs(root)
        if "db.system" in attrs or "db.system.name" in attrs:
            return None  # a bare statement of a scheduled job
        if blocked:
            return "blocked"
        return self._judge(root, attrs)

    def _judge(self, root: ReadableSpan, attrs: Mapping[str, Any]) -> str | None:
        """Slow (the root against its resource's threshold), sampled at ``rate``, or forgotten."""
        duration_ms = ((root.end_time or 0) - (root.start_time or 0)) / 1e6
        if self.thresholds.observe(str(attrs.get(ATTR_RESOURCE) or root.name), duration_ms):
            return "slow"
        rate = self.rate
        if rate >= 1.0 or (rate > 0.0 and self.rng() < rate):
            return "sampled"
        return None

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# ============================================================================ cheap dependency calls
class CallRecorder:
    """Records dependency calls made inside a traced request into the tail sampler's buffer.

    ``record(name, start_ns, attributes, error)`` reads the current span (one context lookup) and
    appends a ``CallRecord``: no SDK span, no attribute validation, no id generation on the request
    path. Calls outside a trace (a scheduled job's statements) are not recorded. ``time_ns`` is
    the clock. The instrumentations below take a cheaper path still under a deferred span (a tuple
    on its root, described only if the trace is kept) and come here otherwise.
    """

    def __init__(self, sampler: TailSamplingProcessor, resource: Resource,
                 time_ns: Callable[[], int] = time.time_ns) -> None:
        self.sampler = sampler
        self.resource = resource
        self.time_ns = time_ns

    def record(self, name: str, start_ns: int, attributes: Mapping[str, Any], error: str | None = None,
               end_ns: int | None = None) -> None:
        parent = trace.get_current_span().get_span_context()
        if not parent.is_valid:
            return
        end = end_ns or self.time_ns()
        self.sampler.record_call(CallRecord(parent, name, start_ns, end, attributes, error))


def _record_call(recorder: CallRecorder, span: Any, describe: Callable[[Any], tuple[str, Mapping[str, Any]]],
                 what: Any, start_ns: int, end_ns: int, error: str | None) -> None:
    """One dependency call made while ``span`` was current. Under a deferred span of a local root: a
    tuple ``(span, describe, what, start, end, error)`` on that root's ``calls`` — no lookup, no
    lock, no name or attribute dict (``describe(what)`` makes those for a kept trace only). Under
    another span: through ``recorder``. Outside any trace: not recorded."""
    if type(span) is DeferredSpan and not span.mixed:
        root = span.root or span
        if error is not None:
            root.error = True
        root.calls.append((span, describe, what, start_ns, end_ns, error))
    elif isinstance(span, trace.Span) and span.get_span_context().is_valid:
        name, attrs = describe(what)
        recorder.record(name, start_ns, attrs, error=error, end_ns=end_ns)


def _call_error(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:300]


class StatementRecorder:
    """DB statement spans on one SQLAlchemy engine, recorded cheaply (``_record_call``).

    Replaces ``opentelemetry-instrumentation-sqlalchemy``'s ``EngineTracer`` on the request path:
    measured by ``tradeguard bench trace``, its per-statement SDK span (context attach, attribute
    validation, URL parsing, semantic-convention bookkeeping) was the largest share of tracing's
    cost (~13 statements per order). The span it yields for a kept trace carries the same
    attributes (``db.system``, ``db.name``, ``db.statement``, named ``VERB dbname``).

    The statements are timed around the engine's dialect's ``do_execute`` / ``do_executemany`` /
    ``do_execute_no_params`` (wrapped on that dialect instance only, where SQLAlchemy hands the
    statement to the DBAPI cursor: the moment ``before``/``after_cursor_execute`` see), not by
    engine event listeners: in-process A/B runs (off vs traced node, alternating batches) put
    ~8 % of a traced ``POST /orders``'s CPU on the two cursor-execute listeners, ~0-2 % without;
    counted (cachegrind, ``SELECT 1`` on SQLite through a connection, ~137k instructions each
    untraced): the wrapper adds ~1.5k instructions per statement, the two listeners doing the same
    recording ~47k (an engine with listeners leaves SQLAlchemy's fast path for every statement).
    A statement that raises is recorded with the DBAPI error (redacted) and keeps its trace.
    """

    _METHODS = ("do_execute", "do_executemany", "do_execute_no_params")

    def __init__(self, recorder: CallRecorder, engine: Any) -> None:
        self.recorder = recorder
        self.engine = engine
        url = engine.url
        dialect = engine.dialect
        self.system = str(dialect.name)
        self.db_name = str(url.database or "").rsplit("/", 1)[-1] or self.system
        self._seen: dict[str, tuple[str, dict[str, Any]]] = {}
        self._wrapped: dict[str, Callable[..., Any]] = {}
        for name in self._METHODS:
            original = getattr(dialect, name)
            if getattr(original, "_tradeguard_traced", False):
                continue  # already timed (one recorder per engine)
            self._wrapped[name] = self._timed(original)
            setattr(dialect, name, self._wrapped[name])

    def _timed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        recorder = self.recorder
        describe = self._describe
        time_ns = recorder.time_ns
        current, key = _current_context, _SPAN_KEY

        def failed(span: Any, statement: str, t0: int, exc: BaseException) -> None:
            _record_call(recorder, span, describe, statement, t0, time_ns(), _call_error(exc))

        def done(span: Any, statement: str, t0: int) -> None:
            if type(span) is DeferredSpan and not span.mixed:
                (span.root or span).calls.append((span, describe, statement, t0, time_ns(), None))
            else:
                _record_call(recorder, span, describe, statement, t0, time_ns(), None)

        # the dialect's own signatures (no *args packing per statement), the common case inlined
        if original.__name__ == "do_execute_no_params":
            def timed(cursor: Any, statement: str, context: Any = None) -> Any:
                span = current().get(key)
                t0 = time_ns()
                try:
                    result = original(cursor, statement, context)
                except Exception as exc:
                    failed(span, statement, t0, exc)
                    raise
                if type(span) is DeferredSpan and span.root is not None:  # under a guard span
                    span.root.calls.append((span, describe, statement, t0, time_ns(), None))
                else:
                    done(span, statement, t0)
                return result
        else:
            def timed(cursor: Any, statement: str, parameters: Any, context: Any = None) -> Any:  # type: ignore[misc]
                span = current().get(key)
                t0 = time_ns()
                try:
                    result = original(cursor, statement, parameters, context)
                except Exception as exc:
                    failed(span, statement, t0, exc)
                    raise
                if type(span) is DeferredSpan and span.root is not None:  # under a guard span
                    span.root.calls.append((span, describe, statement, t0, time_ns(), None))
                else:
                    done(span, statement, t0)
                return result

        timed._tradeguard_traced = True  # type: ignore[attr-defined]
        return timed

    def remove(self) -> None:
        dialect = self.engine.dialect
        for name, fn in self._wrapped.items():
            if dialect.__dict__.get(name) is fn:
                delattr(dialect, name)  # the dialect class's method again
        self._wrapped.clear()

    def _describe(self, statement: str) -> tuple[str, dict[str, Any]]:
        """(span name, attributes) of a statement, cached: SQLAlchemy's compiled statements repeat."""
        found = self._seen.get(statement)
        if found is None:
            verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
            found = (f"{verb} {self.db_name}",
                     {"db.system": self.system, "db.name": self.db_name, "db.statement": statement})
            if len(self._seen) >= 512:
                self._seen.clear()
            self._seen[statement] = found
        return found


# ============================================================================ Redis and the metric store
def instrument_redis(client: Any, recorder: CallRecorder, *, peer: str = "redis") -> bool:
    """Redis commands of one client (the guardians' cluster client) as recorded calls: its
    ``execute_command`` is wrapped on the instance (``opentelemetry-instrumentation-redis`` patches
    the class for the whole process, and several nodes, each its own provider, may share one).
    Pipelines are not covered. Returns whether the client could be wrapped."""
    original = getattr(client, "execute_command", None)
    if original is None or getattr(original, "_tradeguard_traced", False):
        return False
    time_ns = recorder.time_ns
    current, key = _current_context, _SPAN_KEY

    def describe(name: Any) -> tuple[str, dict[str, Any]]:
        command = str(name).upper()
        return f"redis {command}", {"db.system": "redis", "peer.service": peer, "db.statement": command}

    def execute_command(*args: Any, **options: Any) -> Any:
        span = current().get(key)
        t0 = time_ns()
        name = args[0] if args else "COMMAND"
        try:
            result = original(*args, **options)
        except Exception as exc:
            _record_call(recorder, span, describe, name, t0, time_ns(), _call_error(exc))
            raise
        _record_call(recorder, span, describe, name, t0, time_ns(), None)
        return result

    execute_command._tradeguard_traced = True  # type: ignore[attr-defined]
    client.execute_command = execute_command
    return True


class TracedMetricStore:
    """The outbox flusher's metric store with a span per written batch (``metric-store write``,
    CLIENT, ``peer.service=metric-store``, ``tradeguard.points``). The flusher runs on its own
    thread, outside any request: each batch is a trace of its own, tail-sampled like a request
    (a failed write is always kept). Everything else is the wrapped store's."""

    def __init__(self, inner: Any, tracer: trace.Tracer, backend: str) -> None:
        self.inner = inner
        self.tracer = tracer
        self.backend = backend

    def __getattr__(self, name: str) -> Any:  # write_lines only where the inner store has it
        value = getattr(self.inner, name)
        if name == "write_lines":
            return lambda lines: self._traced(value, lines)
        return value

    def write(self, points: Any) -> Any:
        return self._traced(self.inner.write, points)

    def _traced(self, fn: Callable[[Any], T], batch: Any) -> T:
        attrs = {"peer.service": "metric-store", ATTR_RESOURCE: "metric-store write",
                 "tradeguard.metric_store": self.backend, "tradeguard.points": len(batch)}
        with self.tracer.start_as_current_span("metric-store write", kind=SpanKind.CLIENT, attributes=attrs,
                                               record_exception=False, set_status_on_exception=False) as span:
            try:
                return fn(batch)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, redact_text(f"{type(exc).__name__}: {exc}")[:300]))
                raise


# ============================================================================ export off the request path
class ExportQueue:
    """A bounded queue of kept traces drained by one daemon thread into ``export(batch)``.

    ``put`` never blocks: when full, the oldest trace is dropped (``dropped``). A failing
    ``export`` (collector down, store locked) counts its traces as dropped too and is retried
    by nothing: tracing is best effort, the request never waits for it.
    """

    def __init__(self, export: Callable[[list[KeptTrace]], None], *, maxlen: int = 2048,
                 batch: int = 256, interval_s: float = 0.5, name: str = "trace-export") -> None:
        self._export = export
        self._q: deque[KeptTrace] = deque()
        self.maxlen = maxlen
        self.batch = batch
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name
        self.exported = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None

    def put(self, item: KeptTrace) -> None:
        with self._lock:
            self._q.append(item)
            if len(self._q) > self.maxlen:
                self._q.popleft()
                self.dropped += 1
            full = len(self._q) >= self.batch
        if full:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._q)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _take(self) -> list[KeptTrace]:
        with self._lock:
            n = min(self.batch, len(self._q))
            return [self._q.popleft() for _ in range(n)]

    def drain_once(self) -> int:
        """Export one batch now (the worker's step; tests call it directly). Returns traces taken."""
        items = self._take()
        if not items:
            return 0
        try:
            self._export(items)
            self.exported += len(items)
        except Exception as exc:
            self.dropped += len(items)
            self.failures += 1
            self.last_error = redact_text(f"{type(exc).__name__}: {exc}")[:300]
            log.debug("trace export failed: %s", self.last_error)
        return len(items)

    def flush(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._q and time.monotonic() < deadline:
            self.drain_once()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            while self.drain_once():
                if self._stop.is_set():
                    break

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush(timeout_s)

    def status(self) -> dict[str, Any]:
        return {"queued": len(self._q), "capacity": self.maxlen, "exported": self.exported,
                "dropped": self.dropped, "export_failures": self.failures, "last_error": self.last_error}


# ============================================================================ the embedded span store
@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str  # ok | error
    status_message: str
    attributes: dict[str, Any]
    instance: str = ""

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root: str
    start_ns: int
    duration_ms: float
    outcome: str
    order_id: str | None
    instance: str
    spans: int
    rule: str | None = None
    status_code: int | None = None


@dataclass
class TraceQuery:
    trace_id: str | None = None
    order_id: str | None = None
    resource: str | None = None
    outcome: str | None = None  # error | blocked | slow | sampled
    min_ms: float | None = None
    max_ms: float | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = 100


_KIND_NAMES = {kind: kind.name.lower() for kind in SpanKind}


def span_record(span: ReadableSpan, instance: str = "") -> SpanRecord:
    ctx = span.context
    parent = span.parent
    status = span.status
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in _attrs(span).items()}
    return SpanRecord(
        f"{ctx.trace_id:032x}" if ctx else "",
        f"{ctx.span_id:016x}" if ctx else "",
        f"{parent.span_id:016x}" if parent is not None else None,
        span.name,
        _KIND_NAMES[span.kind],
        int(span.start_time or 0),
        int(span.end_time or 0),
        "error" if status.status_code is StatusCode.ERROR else "ok",
        status.description or "",
        attrs,
        instance,
    )


# json.dumps(..., default=str) builds a new encoder on every call (a kept trace: one per span)
_ENCODE_ATTRIBUTES = json.JSONEncoder(default=str).encode


_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY, root TEXT NOT NULL, start_ns INTEGER NOT NULL, duration_ms REAL NOT NULL,
    outcome TEXT NOT NULL, order_id TEXT, instance TEXT NOT NULL, spans INTEGER NOT NULL,
    rule TEXT, status_code INTEGER, resources TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS traces_start ON traces(start_ns);
CREATE INDEX IF NOT EXISTS traces_order ON traces(order_id);
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, status TEXT NOT NULL, status_message TEXT NOT NULL,
    attributes TEXT NOT NULL, instance TEXT NOT NULL, PRIMARY KEY (trace_id, span_id));
CREATE TABLE IF NOT EXISTS span_store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def summarize(records: Sequence[SpanRecord], outcome: str) -> TraceSummary:
    by_id = {r.span_id for r in records}
    roots = [r for r in records if r.parent_id is None or r.parent_id not in by_id]
    root = min(roots or records, key=lambda r: r.start_ns)
    order_id = next((str(r.attributes[ATTR_ORDER_ID]) for r in records if r.attributes.get(ATTR_ORDER_ID)),
                    None)
    rule = next((str(r.attributes[ATTR_RULE]) for r in records if r.attributes.get(ATTR_RULE)), None)
    code = root.attributes.get("http.response.status_code", root.attributes.get("http.status_code"))
    return TraceSummary(
        trace_id=root.trace_id, root=root.name, start_ns=root.start_ns, duration_ms=root.duration_ms,
        outcome=outcome, order_id=order_id, instance=root.instance, spans=len(records), rule=rule,
        status_code=int(code) if isinstance(code, int | float | str) and str(code).isdigit() else None,
    )


class SpanStore:
    """Kept traces in one SQLite file (WAL, shared by the nodes of a host), bounded by count and age.

    ``write`` (the export thread) prunes every ``prune_every`` writes: traces older than
    ``max_age_s``, then the oldest beyond ``max_traces``; what it pruned is counted (``evicted``,
    kept in the file so every process sees it). Reads (console, CLI) never block writers long:
    each is one short statement.
    """

    def __init__(self, path: str | Path, *, max_traces: int = 20_000, max_age_s: float = 24 * 3600,
                 prune_every: int = 20, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_traces = max_traces
        self.max_age_s = max_age_s
        self.prune_every = prune_every
        self.clock = clock
        self._writes = 0
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.commit()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ writing
    def write(self, traces: Iterable[tuple[Sequence[SpanRecord], str]]) -> int:
        rows_t, rows_s = [], []
        for records, outcome in traces:
            if not records:
                continue
            s = summarize(records, outcome)
            resources = "|" + "|".join(sorted({r.name for r in records} | {
                str(r.attributes[ATTR_RESOURCE]) for r in records if r.attributes.get(ATTR_RESOURCE)})) + "|"
            rows_t.append((s.trace_id, s.root, s.start_ns, s.duration_ms, s.outcome, s.order_id, s.instance,
                           s.spans, s.rule, s.status_code, resources))
            rows_s.extend((r.trace_id, r.span_id, r.parent_id, r.name, r.kind, r.start_ns, r.end_ns, r.status,
                           r.status_message, _ENCODE_ATTRIBUTES(r.attributes), r.instance)
                          for r in records)
        with self._lock:
            self._conn.executemany("INSERT OR REPLACE INTO traces VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows_t)
            self._conn.executemany("INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows_s)
            self._conn.commit()
            self._writes += 1
            if self._writes % self.prune_every == 0:
                self._prune_locked()
        return len(rows_t)

    def prune(self) -> int:
        with self._lock:
            return self._prune_locked()

    def _prune_locked(self) -> int:
        c = self._conn
        cutoff = int((self.clock() - self.max_age_s) * 1e9)
        old = [r[0] for r in c.execute("SELECT trace_id FROM traces WHERE start_ns < ?", (cutoff,))]
        (count,) = c.execute("SELECT COUNT(*) FROM traces").fetchone()
        over = count - len(old) - self.max_traces
        if over > 0:
            old += [r[0] for r in c.execute(
                "SELECT trace_id FROM traces WHERE start_ns >= ? ORDER BY start_ns LIMIT ?", (cutoff, over))]
        for i in range(0, len(old), 500):
            chunk = old[i:i + 500]
            marks = ",".join("?" * len(chunk))
            c.execute(f"DELETE FROM spans WHERE trace_id IN ({marks})", chunk)
            c.execute(f"DELETE FROM traces WHERE trace_id IN ({marks})", chunk)
        if old:
            c.execute("INSERT INTO span_store_meta VALUES ('evicted', ?) "
                      "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (len(old),))
        c.commit()
        return len(old)

    # ------------------------------------------------------------------ reading
    def search(self, q: TraceQuery) -> list[TraceSummary]:
        where, params = [], []  # type: ignore[var-annotated]
        if q.trace_id:
            where.append("trace_id = ?")
            params.append(q.trace_id.strip().lower())
        if q.order_id:
            where.append("order_id = ?")
            params.append(q.order_id.strip())
        if q.resource:
            where.append("resources LIKE ?")
            params.append(f"%|{q.resource.strip()}|%")
        if q.outcome:
            if q.outcome not in OUTCOMES:
                raise ValueError(f"outcome: must be one of {', '.join(OUTCOMES)}, got {q.outcome!r}")
            where.append("outcome = ?")
            params.append(q.outcome)
        if q.min_ms is not None:
            where.append("duration_ms >= ?")
            params.append(float(q.min_ms))
        if q.max_ms is not None:
            where.append("duration_ms <= ?")
            params.append(float(q.max_ms))
        if q.since_ns is not None:
            where.append("start_ns >= ?")
            params.append(int(q.since_ns))
        if q.until_ns is not None:
            where.append("start_ns <= ?")
            params.append(int(q.until_ns))
        sql = ("SELECT trace_id, root, start_ns, duration_ms, outcome, order_id, instance, spans, rule, "
               "status_code FROM traces")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_ns DESC LIMIT ?"
        params.append(max(1, min(int(q.limit), 1000)))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [TraceSummary(*row) for row in rows]

    def spans(self, trace_id: str) -> list[SpanRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status, status_message, "
                "attributes, instance FROM spans WHERE trace_id = ? ORDER BY start_ns",
                (trace_id.strip().lower(),)).fetchall()
        return [SpanRecord(*r[:9], attributes=json.loads(r[9]), instance=r[10]) for r in rows]

    def edge_spans(self, since_ns: int, limit: int = 20_000) -> list[SpanRecord]:
        """The CLIENT spans (database, payment gateway) since ``since_ns``, for the service map."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status, status_message, "
                "attributes, instance FROM spans WHERE kind = 'client' AND start_ns >= ? "
                "ORDER BY start_ns DESC LIMIT ?", (since_ns, limit)).fetchall()
        return [SpanRecord(*r[:9], attributes=json.loads(r[9]), instance=r[10]) for r in rows]

    def status(self) -> dict[str, Any]:
        with self._lock:
            (count,) = self._conn.execute("SELECT COUNT(*) FROM traces").fetchone()
            row = self._conn.execute("SELECT value FROM span_store_meta WHERE key = 'evicted'").fetchone()
        return {"path": str(self.path), "traces": count, "max_traces": self.max_traces,
                "max_age_s": self.max_age_s, "evicted": row[0] if row else 0}


# ======================================================================== HTTP: route span, headers, problems
_ORDER_PATH = re.compile(r"^/orders/([^/]+)")


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


# ============================================================================ a node's tracing
@dataclass
class Tracing:
    """One node's tracing: provider, tail sampler, export queue and its sink."""

    provider: TracerProvider
    sampler: TailSamplingProcessor
    queue: ExportQueue
    sink: str  # "store" | "otlp"
    store: SpanStore | None = None
    route_name: Callable[[dict[str, Any]], str | None] | None = None
    _engine_tracers: list[Any] = field(default_factory=list)
    _tracer: DeferredTracer | None = None

    @property
    def tracer(self) -> DeferredTracer:
        """The node's tracer: ``DeferredSpan`` s straight into the tail sampler, built into SDK spans
        for kept traces only (``provider`` is the SDK's, with the same sampler, for anything that
        wants SDK spans)."""
        if self._tracer is None:
            self._tracer = DeferredTracer(self.sampler.on_end, self.provider.resource)
        return self._tracer

    def wrap_guard(self, inner: GuardPort) -> TracingGuard:
        return TracingGuard(inner, self.tracer)

    @property
    def calls(self) -> CallRecorder:
        """Where dependency calls of a request are recorded (DB statements, Redis, …)."""
        return CallRecorder(self.sampler, self.provider.resource)

    def instrument_engine(self, engine: Any) -> None:
        """DB statement spans on a SQLAlchemy engine (``StatementRecorder``: recorded cheaply, built
        into spans only for kept traces)."""
        self._engine_tracers.append(StatementRecorder(self.calls, engine))

    def instrument_redis(self, client: Any) -> bool:
        return instrument_redis(client, self.calls)

    def instrument_metric_store(self, flusher: Any, backend: str) -> None:
        """A span per batch the outbox ``flusher`` writes to the metric store."""
        if not isinstance(flusher.store, TracedMetricStore):
            flusher.store = TracedMetricStore(flusher.store, self.tracer, backend)

    def instrument_app(self, app: Any) -> None:
        """The route span outermost (``RouteSpanMiddleware``), then the app's own stack (error
        handling, the guardians' middleware, routes)."""
        original = app.build_middleware_stack
        tracing = self

        def build() -> Any:
            return RouteSpanMiddleware(original(), tracing.tracer, tracing.route_name)

        app.build_middleware_stack = build

    def start(self) -> None:
        self.queue.start()

    def stop(self) -> None:
        for recorder in self._engine_tracers:
            recorder.remove()
        self._engine_tracers.clear()
        self.queue.stop()
        try:
            self.provider.shutdown()
        except Exception:
            log.exception("tracer provider shutdown failed")
        if self.store is not None:
            self.store.close()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "sink": self.sink, "sample": self.sampler.rate,
                               "decisions": dict(self.sampler.counts), **self.queue.status()}
        if self.store is not None:
            try:
                out["store"] = self.store.status()
            except Exception as exc:
                out["store"] = {"error": redact_text(f"{type(exc).__name__}: {exc}")}
        return out


def build_tracing(
    *,
    instance: str,
    service_name: str,
    sample: float,
    otlp_endpoint: str | None = None,
    store_path: Path | None = None,
    slow_ms: Mapping[str, float] | None = None,
    rng: Callable[[], float] | None = None,
    queue_size: int = 2048,
    otlp_timeout_s: float = 2.0,
    blocked_per_s: float | None = BLOCKED_PER_S,
) -> Tracing:
    """A node's tracing, exporting to OTLP/HTTP at ``otlp_endpoint`` or else to ``store_path``."""
    store: SpanStore | None = None
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=otlp_timeout_s)

        def export(items: list[KeptTrace]) -> None:
            from opentelemetry.sdk.trace.export import SpanExportResult

            spans = [s for item in items for s in item.spans]
            if exporter.export(spans) is not SpanExportResult.SUCCESS:
                raise ConnectionError(f"OTLP export to {endpoint} failed")

        sink = "otlp"
    else:
        if store_path is None:
            raise ValueError("store_path: required when no OTLP endpoint is set")
        store = SpanStore(store_path)
        kept_store = store

        def export(items: list[KeptTrace]) -> None:
            kept_store.write([(item.records(instance), item.outcome) for item in items])

        sink = "store"
    queue = ExportQueue(export, maxlen=queue_size)
    sampler = TailSamplingProcessor(queue.put, rate=sample, thresholds=SlowThresholds(slow_ms), rng=rng,
                                   blocked_per_s=blocked_per_s)
    provider = TracerProvider(
        sampler=ALWAYS_ON,
        resource=Resource.create({"service.name": service_name, "service.instance.id": instance}),
    )
    provider.add_span_processor(sampler)
    return Tracing(provider=provider, sampler=sampler, queue=queue, sink=sink, store=store)


# ============================================================================ reading traces (CLI, console)
def waterfall_rows(records: Sequence[SpanRecord]) -> list[tuple[int, SpanRecord]]:
    """(depth, span) in tree order: each span after its parent, siblings by start time."""
    ids = {r.span_id for r in records}
    children: dict[str | None, list[SpanRecord]] = {}
    for r in records:
        children.setdefault(r.parent_id if r.parent_id in ids else None, []).append(r)
    out: list[tuple[int, SpanRecord]] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda x: x.start_ns):
            out.append((depth, r))
            walk(r.span_id, depth + 1)

    walk(None, 0)
    return out


_SHOWN_ATTRS = (ATTR_DECISION, ATTR_RULE, ATTR_RULE_TYPE, ATTR_REASON, ATTR_WAIT_MS, ATTR_ORDER_ID,
                "http.response.status_code", "http.status_code", "db.statement", "db.query.text")


def format_waterfall(records: Sequence[SpanRecord], *, width: int = 40) -> str:
    """The trace as text: one line per span, indented by depth, with a bar on the trace's timeline."""
    if not records:
        return "(no spans)"
    rows = waterfall_rows(records)
    t0 = min(r.start_ns for r in records)
    total = max(max(r.end_ns for r in records) - t0, 1)
    name_w = min(60, max(len("  " * d + r.name) for d, r in rows))
    lines = [f"trace {records[0].trace_id}  {total / 1e6:.2f} ms  {len(records)} span(s)"]
    for depth, r in rows:
        a = int((r.start_ns - t0) / total * width)
        b = max(a + 1, int((r.end_ns - t0) / total * width))
        bar = " " * a + "█" * (b - a) + " " * (width - b)
        label = ("  " * depth + r.name)[:name_w].ljust(name_w)
        status = "ERROR " if r.status == "error" else ""
        shown = {k: r.attributes[k] for k in _SHOWN_ATTRS if k in r.attributes}
        extra = " ".join(f"{k.rsplit('.', 1)[-1]}={' '.join(str(v).split())[:80]}" for k, v in shown.items())
        msg = f" ({r.status_message})" if r.status_message else ""
        lines.append(f"{label} |{bar}| {r.duration_ms:8.2f} ms {status}{extra}{msg}".rstrip())
    return "\n".join(lines)


class TraceReader:
    """The console's ``TraceStorePort`` over a ``SpanStore``: plain dicts in and out."""

    def __init__(self, store: SpanStore) -> None:
        self.store = store

    def search(self, *, trace_id: str | None = None, order_id: str | None = None, resource: str | None = None,
               outcome: str | None = None, min_ms: float | None = None, max_ms: float | None = None,
               since_ns: int | None = None, until_ns: int | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
        from dataclasses import asdict

        q = TraceQuery(trace_id=trace_id, order_id=order_id, resource=resource, outcome=outcome,
                       min_ms=min_ms, max_ms=max_ms, since_ns=since_ns, until_ns=until_ns, limit=limit)
        return [asdict(t) for t in self.store.search(q)]

    def spans(self, trace_id: str) -> list[dict[str, Any]]:
        from dataclasses import asdict

        return [asdict(s) for s in self.store.spans(trace_id)]

    def edge_spans(self, since_ns: int) -> list[dict[str, Any]]:
        from dataclasses import asdict

        return [asdict(s) for s in self.store.edge_spans(since_ns)]

    def close(self) -> None:
        self.store.close()
