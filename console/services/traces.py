"""Traces: find kept traces, one trace as a waterfall, and the node's service map.

The console reads the span store through ``TraceStorePort`` (plain dicts in and out); the
composition root plugs ``tradeguard.tracing.TraceReader`` over the embedded span store
(``tradeguard.bootstrap.build_console_services``) and sets it as ``ConsoleServices.traces``.
Each call is one bounded read of the store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from common.stats import percentile

OUTCOMES = ("error", "blocked", "slow", "sampled")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class TraceStorePort(Protocol):
    """What the Traces page needs of the span store."""

    def search(self, *, trace_id: str | None = ..., order_id: str | None = ..., resource: str | None = ...,
               outcome: str | None = ..., min_ms: float | None = ..., max_ms: float | None = ...,
               since_ns: int | None = ..., until_ns: int | None = ...,
               limit: int = ...) -> list[dict[str, Any]]: ...
    def spans(self, trace_id: str) -> list[dict[str, Any]]: ...
    def edge_spans(self, since_ns: int) -> list[dict[str, Any]]: ...


@dataclass
class TraceFilter:
    trace_id: str = ""
    order_id: str = ""
    resource: str = ""
    outcome: str = ""  # "" = any
    min_ms: float | None = None
    limit: int = 100

    def errors(self) -> list[str]:
        out = []
        tid = self.trace_id.strip().lower()
        if tid and not _TRACE_ID.match(tid):
            out.append(f"trace id: must be 32 hex digits, got {self.trace_id!r}")
        if self.outcome and self.outcome not in OUTCOMES:
            out.append(f"outcome: must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")
        if self.min_ms is not None and self.min_ms < 0:
            out.append(f"min duration: must be ≥ 0 ms, got {self.min_ms}")
        return out


@dataclass
class TraceList:
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Edge:
    source: str
    target: str
    calls: int
    rate_per_s: float
    error_rate_pct: float
    p99_ms: float | None


@dataclass
class TraceDetail:
    trace_id: str
    spans: list[dict[str, Any]]  # tree order, with depth, offset_ms, duration_ms
    duration_ms: float
    errors: list[str] = field(default_factory=list)


def find_traces(store: TraceStorePort | None, f: TraceFilter) -> TraceList:
    if store is None:
        return TraceList(errors=["no span store is configured for the console"])
    problems = f.errors()
    if problems:
        return TraceList(errors=problems)
    try:
        rows = store.search(trace_id=f.trace_id.strip().lower() or None, order_id=f.order_id.strip() or None,
                            resource=f.resource.strip() or None, outcome=f.outcome or None,
                            min_ms=f.min_ms, limit=f.limit)
    except Exception as exc:
        return TraceList(errors=[f"span store: {type(exc).__name__}: {exc}"])
    return TraceList(rows=rows)


def trace_detail(store: TraceStorePort | None, trace_id: str) -> TraceDetail:
    tid = trace_id.strip().lower()
    if store is None:
        return TraceDetail(tid, [], 0.0, ["no span store is configured for the console"])
    try:
        spans = store.spans(tid)
    except Exception as exc:
        return TraceDetail(tid, [], 0.0, [f"span store: {type(exc).__name__}: {exc}"])
    if not spans:
        return TraceDetail(tid, [], 0.0, [f"trace {tid} is not in the span store (not kept, or pruned)"])
    return TraceDetail(tid, tree_order(spans), _duration(spans))


def _duration(spans: Sequence[dict[str, Any]]) -> float:
    return (max(s["end_ns"] for s in spans) - min(s["start_ns"] for s in spans)) / 1e6


def tree_order(spans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans after their parents (siblings by start), each with ``depth``, ``offset_ms``, ``duration_ms``."""
    ids = {s["span_id"] for s in spans}
    t0 = min(s["start_ns"] for s in spans)
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        children.setdefault(s["parent_id"] if s["parent_id"] in ids else None, []).append(s)
    out: list[dict[str, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x["start_ns"]):
            out.append({**s, "depth": depth, "offset_ms": (s["start_ns"] - t0) / 1e6,
                        "duration_ms": (s["end_ns"] - s["start_ns"]) / 1e6})
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return out


def edge_target(span: dict[str, Any]) -> str | None:
    attrs = span.get("attributes", {})
    if attrs.get("peer.service"):  # payment-gateway, redis, metric-store
        return str(attrs["peer.service"])
    system = attrs.get("db.system") or attrs.get("db.system.name")
    if system:
        return f"database ({system})"
    return None


def service_map(store: TraceStorePort | None, now_ns: int, minutes: int = 15) -> tuple[list[Edge], list[str]]:
    """The node's dependencies with calls/s, error rate and p99 per edge, over the kept traces."""
    if store is None:
        return [], ["no span store is configured for the console"]
    window_s = minutes * 60
    try:
        spans = store.edge_spans(now_ns - window_s * 1_000_000_000)
    except Exception as exc:
        return [], [f"span store: {type(exc).__name__}: {exc}"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        target = edge_target(s)
        if target:
            groups.setdefault(target, []).append(s)
    edges = []
    for target, group in sorted(groups.items()):
        durations = [(s["end_ns"] - s["start_ns"]) / 1e6 for s in group]
        errors = sum(1 for s in group if s["status"] == "error")
        edges.append(Edge("tradeguard node", target, len(group), round(len(group) / window_s, 3),
                          round(100.0 * errors / len(group), 2), percentile(durations, 99.0)))
    return edges, []


# ============================================================================ alert exemplars
EXEMPLAR_OUTCOMES = ("error", "blocked", "slow")


@dataclass
class Exemplars:
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    note: str = ""


def alert_exemplars(store: TraceStorePort | None, alert: dict[str, Any], *, lookback_s: float = 300.0,
                    after_s: float = 60.0, limit: int = 3) -> Exemplars:
    """The exemplar traces of an alert: kept traces of the alert's ``resource`` label (on its
    ``instance`` when it names one) that started in the ``lookback_s`` before it fired (up to
    ``after_s`` after), errors first, then blocked, then slow; sampled ones only if none of those.

    Design: the node already keeps every error, blocked and slow request of a resource in the span
    store with its resource, node and start time, so the exemplars are looked up here, at the
    alert's detail, by (resource, instance, firing time) — the alert itself stores nothing and
    ``alerts/`` needs no tracing port. One bounded span-store read. Exemplars older than the span
    store's retention (24 h by default) are gone: the note says so.
    """
    if store is None:
        return Exemplars(note="No span store is configured for the console: no exemplar traces.")
    labels = alert.get("labels") or {}
    resource = str(labels.get("resource") or "")
    if not resource:
        return Exemplars()  # not a resource alert (e.g. a node down): no request to show
    when = alert.get("fired_at") or alert.get("active_since")
    if not when:
        return Exemplars()
    try:
        fired = datetime.fromisoformat(str(when))
    except ValueError:
        return Exemplars(errors=[f"fired_at: not an ISO timestamp: {when!r}"])
    fired_ns = int(fired.timestamp() * 1e9)
    try:
        rows = store.search(resource=resource, since_ns=fired_ns - int(lookback_s * 1e9),
                            until_ns=fired_ns + int(after_s * 1e9), limit=200)
    except Exception as exc:
        return Exemplars(errors=[f"span store: {type(exc).__name__}: {exc}"])
    instance = str(labels.get("instance") or "")
    if instance:
        rows = [r for r in rows if r.get("instance") == instance]
    rank = {o: i for i, o in enumerate(EXEMPLAR_OUTCOMES)}
    chosen = [r for r in rows if r.get("outcome") in rank]
    chosen.sort(key=lambda r: (rank[r["outcome"]], -abs(int(r["start_ns"]) - fired_ns)))
    if not chosen:
        chosen = rows
    if not chosen:
        return Exemplars(note=f"No kept trace of {resource} around {fired:%H:%M:%S} "
                              "(pruned from the span store, or none was kept).")
    return Exemplars(rows=chosen[:limit])
