"""The embedded span store (SQLite), its rows and its queries."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from tradeguard.tracing.conventions import (
    _KIND_NAMES,
    ATTR_ORDER_ID,
    ATTR_RESOURCE,
    ATTR_RULE,
    OUTCOMES,
    SpanRecord,
)
from tradeguard.tracing.spans import _attrs


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
