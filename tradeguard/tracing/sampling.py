"""Tail sampling: the keep decision at a trace's local root, slow thresholds, kept traces."""

from __future__ import annotations

import math
import random
import threading
import time
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode

from tradeguard.tracing.conventions import (
    _REFUSED,
    ATTR_DECISION,
    ATTR_RESOURCE,
    ATTR_RULE,
    BLOCKED_PER_S,
    OUTCOMES,
    SpanRecord,
)
from tradeguard.tracing.spans import _CLOSED, DeferredSpan, _attrs
from tradeguard.tracing.store import span_record


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
