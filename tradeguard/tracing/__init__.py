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

from tradeguard.tracing.calls import (
    CallRecorder,
    StatementRecorder,
    TracedMetricStore,
    instrument_redis,
)
from tradeguard.tracing.conventions import (
    ATTR_DECISION,
    ATTR_ORDER_ID,
    ATTR_PEER,
    ATTR_REASON,
    ATTR_RESOURCE,
    ATTR_RULE,
    ATTR_RULE_TYPE,
    ATTR_WAIT_MS,
    BLOCKED_PER_S,
    OUTCOMES,
    PAYMENT_CHARGE,
    SpanRecord,
    current_ids,
    door_trace_ids,
    span_id_hex,
    trace_id_hex,
)
from tradeguard.tracing.export import (
    ExportQueue,
)
from tradeguard.tracing.guard import (
    GuardPort,
    TracingGuard,
)
from tradeguard.tracing.middleware import (
    RouteSpanMiddleware,
)
from tradeguard.tracing.node import (
    Tracing,
    build_tracing,
)
from tradeguard.tracing.reading import (
    TraceReader,
    format_waterfall,
    waterfall_rows,
)
from tradeguard.tracing.sampling import (
    CallRecord,
    KeptTrace,
    SlowThresholds,
    TailSamplingProcessor,
    call_span,
)
from tradeguard.tracing.spans import (
    DeferredSpan,
    DeferredTracer,
)
from tradeguard.tracing.store import (
    SpanStore,
    TraceQuery,
    TraceSummary,
    span_record,
    summarize,
)

__all__ = [
    "ATTR_DECISION",
    "ATTR_ORDER_ID",
    "ATTR_PEER",
    "ATTR_REASON",
    "ATTR_RESOURCE",
    "ATTR_RULE",
    "ATTR_RULE_TYPE",
    "ATTR_WAIT_MS",
    "BLOCKED_PER_S",
    "OUTCOMES",
    "PAYMENT_CHARGE",
    "CallRecord",
    "CallRecorder",
    "DeferredSpan",
    "DeferredTracer",
    "ExportQueue",
    "GuardPort",
    "KeptTrace",
    "RouteSpanMiddleware",
    "SlowThresholds",
    "SpanRecord",
    "SpanStore",
    "StatementRecorder",
    "TailSamplingProcessor",
    "TraceQuery",
    "TraceReader",
    "TraceSummary",
    "TracedMetricStore",
    "Tracing",
    "TracingGuard",
    "build_tracing",
    "call_span",
    "current_ids",
    "door_trace_ids",
    "format_waterfall",
    "instrument_redis",
    "span_id_hex",
    "span_record",
    "summarize",
    "trace_id_hex",
    "waterfall_rows",
]
