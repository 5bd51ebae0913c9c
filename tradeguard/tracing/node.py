"""A node's tracing: provider, tail sampler, export queue and sink, and what it instruments."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from common.redact import redact_text
from tradeguard.tracing.calls import CallRecorder, StatementRecorder, TracedMetricStore, instrument_redis
from tradeguard.tracing.conventions import BLOCKED_PER_S
from tradeguard.tracing.export import ExportQueue
from tradeguard.tracing.guard import GuardPort, TracingGuard
from tradeguard.tracing.middleware import RouteSpanMiddleware
from tradeguard.tracing.sampling import KeptTrace, SlowThresholds, TailSamplingProcessor
from tradeguard.tracing.spans import DeferredTracer
from tradeguard.tracing.store import SpanStore

log = logging.getLogger(__name__)


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
