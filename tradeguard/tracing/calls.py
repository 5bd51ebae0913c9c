"""Cheap dependency calls: database statements, Redis commands and metric-store writes as
plain records on their trace's root, built into CLIENT spans only for kept traces."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind, Status, StatusCode

from common.redact import redact_text
from tradeguard.tracing.conventions import ATTR_RESOURCE
from tradeguard.tracing.sampling import CallRecord, TailSamplingProcessor
from tradeguard.tracing.spans import _SPAN_KEY, DeferredSpan, _current_context

T = TypeVar("T")


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
