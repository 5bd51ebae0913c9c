"""``tradeguard traces show TRACE_ID`` / ``tradeguard traces find …``: kept traces from the embedded
span store (``var/traces.db``; with ``TRADEGUARD_OTLP_ENDPOINT`` set, look in the collector instead).

``show`` prints the trace as a text waterfall (exit 1 when the store has no such trace); ``find``
lists kept traces, newest first, by order id, resource, outcome and duration (``--json``: one
JSON object a line).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from tradeguard.settings import load_settings
from tradeguard.tracing import OUTCOMES, SpanStore, TraceQuery, format_waterfall


def _open() -> SpanStore | None:
    from tradeguard.bootstrap import open_span_store, span_store_path

    s = load_settings()
    path = span_store_path(s)
    if not path.exists():
        print(f"tradeguard traces: no span store at {path} (no node kept a trace here yet)", file=sys.stderr)
        return None
    return open_span_store(s)


def _show(args: argparse.Namespace) -> int:
    trace_id = args.trace_id.strip().lower()
    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
        print(f"tradeguard traces: TRACE_ID must be 32 hex digits, got {args.trace_id!r}", file=sys.stderr)
        return 2
    store = _open()
    if store is None:
        return 1
    try:
        spans = store.spans(trace_id)
    finally:
        store.close()
    if not spans:
        print(f"tradeguard traces: trace {trace_id} is not in the span store (not kept, or pruned)",
              file=sys.stderr)
        return 1
    print(format_waterfall(spans, width=args.width))
    return 0


def _find(args: argparse.Namespace) -> int:
    store = _open()
    if store is None:
        return 1
    try:
        rows = store.search(TraceQuery(order_id=args.order, resource=args.resource, outcome=args.outcome,
                                       min_ms=args.min_ms, limit=args.limit))
    finally:
        store.close()
    for t in rows:
        if args.json:
            print(json.dumps(asdict(t)))
        else:
            at = datetime.fromtimestamp(t.start_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{t.trace_id}  {at}  {t.duration_ms:9.2f} ms  {t.outcome:<7}  {t.root}"
                  + (f"  order={t.order_id}" if t.order_id else "") + (f"  rule={t.rule}" if t.rule else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("traces", help="kept call-chain traces (embedded span store)")
    sub = p.add_subparsers(dest="traces_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="one trace as a text waterfall")
    show.add_argument("trace_id", metavar="TRACE_ID", help="32 hex digits (X-Trace-Id)")
    show.add_argument("--width", type=int, default=40, help="width of the timeline bars (default 40)")
    show.set_defaults(func=_show)
    find = sub.add_parser("find", help="kept traces, newest first")
    find.add_argument("--order", default=None, help="order id")
    find.add_argument("--resource", default=None, help="a span or resource name, e.g. payment.charge")
    find.add_argument("--outcome", default=None, choices=OUTCOMES)
    find.add_argument("--min-ms", type=float, default=None, help="at least this long")
    find.add_argument("--limit", type=int, default=20)
    find.add_argument("--json", action="store_true", help="one JSON object a line")
    find.set_defaults(func=_find)
