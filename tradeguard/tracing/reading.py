"""Reading traces for the CLI and the console: the waterfall and the reader over the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tradeguard.tracing.conventions import (
    ATTR_DECISION,
    ATTR_ORDER_ID,
    ATTR_REASON,
    ATTR_RULE,
    ATTR_RULE_TYPE,
    ATTR_WAIT_MS,
    SpanRecord,
)
from tradeguard.tracing.store import SpanStore, TraceQuery


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
