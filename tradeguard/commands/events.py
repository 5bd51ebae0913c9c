"""``tradeguard events``: the trading DB's event journal.

- ``tradeguard events tail [--follow] [--name OrderPaid] [--order ID] [-n N]`` prints journal
  events as JSON lines (the last N, then, with ``--follow``, new ones as they commit);
- ``tradeguard events replay --from ISO --to ISO`` rebuilds the business points (``orders``,
  ``refunds``, ``payments``, ``deliveries``) of that range from the journal into the metric
  store — after a store was lost, say. Idempotent: every point written is the full sum of its
  series and second, so replaying twice (or over what the relay already wrote) changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from tradeguard.settings import load_settings


def _tail(args: argparse.Namespace) -> int:
    from tradeguard.bootstrap import open_journal

    settings = load_settings()
    trading, journal = open_journal(settings)
    try:
        rows = journal.tail(name=args.name, order_id=args.order, last=args.lines)
        after = rows[-1].id if rows else max((r.id for r in journal.tail(last=1)), default=0)
        for row in rows:
            print(json.dumps(row.as_dict(), default=str, sort_keys=True), flush=True)
        while args.follow:
            time.sleep(args.poll)
            # new ids above the last seen; a late-committing lower id is shown by the relay, not here
            batch = journal.tail(after, limit=1000)
            for row in batch:
                if (args.name is None or row.name == args.name) and (
                    args.order is None or row.order_id == args.order
                ):
                    print(json.dumps(row.as_dict(), default=str, sort_keys=True), flush=True)
            if batch:
                after = batch[-1].id
    except KeyboardInterrupt:
        pass
    finally:
        trading.dispose()
    return 0


def _iso(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _replay(args: argparse.Namespace) -> int:
    from tradeguard.bootstrap import build_relay

    if args.end <= args.start:
        print(f"tradeguard events replay: --to ({args.end.isoformat()}) must be after --from "
              f"({args.start.isoformat()})", file=sys.stderr)
        return 2
    settings = load_settings()
    relay = build_relay(settings)
    try:
        written = relay.replay(args.start, args.end)
    finally:
        relay.store.close()
    print(json.dumps({"from": args.start.isoformat(), "to": args.end.isoformat(), "points": written}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("events", help="the trading DB's event journal: tail it, replay its figures",
                              description=(__doc__ or "").split("\n\n")[0])
    sub = p.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    t = sub.add_parser("tail", help="print journal events as JSON lines")
    t.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    t.add_argument("--name", default=None, help="only events of this name (e.g. OrderPaid)")
    t.add_argument("--order", default=None, help="only events of this order id")
    t.add_argument("-n", "--lines", type=int, default=20, help="how many of the newest to print first (20)")
    t.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)
    t.set_defaults(func=_tail)
    r = sub.add_parser("replay", help="rebuild the business points of a time range from the journal")
    r.add_argument("--from", dest="start", type=_iso, required=True, help="start, ISO 8601 (UTC if no zone)")
    r.add_argument("--to", dest="end", type=_iso, required=True, help="end (exclusive), ISO 8601")
    r.set_defaults(func=_replay)
