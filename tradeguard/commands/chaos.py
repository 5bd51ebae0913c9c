"""``tradeguard chaos payment [--latency-ms N] [--error-rate R] [--outage on|off] | --reset``.

Writes the payment gateway's chaos settings to the control DB; every running node picks
them up within 2 s (see ``tradeguard.chaos``). Without options it shows the current ones.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from tradeguard.chaos import TARGETS, ChaosError, parse_on_off
from tradeguard.settings import load_settings


def _handle(args: argparse.Namespace) -> int:
    try:
        outage = parse_on_off(args.outage) if args.outage is not None else None
        changes = (args.latency_ms, args.error_rate, outage)
        if args.reset and any(v is not None for v in changes):
            raise ChaosError("--reset cannot be combined with --latency-ms, --error-rate or --outage")
        from tradeguard.bootstrap import open_chaos_store

        settings = load_settings()
        store = open_chaos_store(settings)
        try:
            by = args.by or getpass.getuser()
            if args.reset:
                result = store.reset(args.target, by=by)
            elif any(v is not None for v in changes):
                result = store.set(
                    args.target, latency_ms=args.latency_ms, error_rate=args.error_rate, outage=outage, by=by
                )
            else:
                result = store.get(args.target)
        finally:
            store.close()
    except ChaosError as exc:
        print(f"tradeguard chaos: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"target": args.target, **result.as_dict()}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chaos",
        help="change the payment gateway's latency, error rate, outage on running nodes",
        description="Stored in the control DB; running nodes apply it within 2 s. "
        "Without options: print the current settings.",
    )
    p.add_argument("target", choices=TARGETS, help="what to disturb")
    p.add_argument("--latency-ms", type=int, default=None, help="added latency per charge, 0..60000 ms")
    p.add_argument("--error-rate", type=float, default=None, help="share of charges that fail, 0.0..1.0")
    p.add_argument("--outage", default=None, metavar="on|off", help="gateway down (every charge fails)")
    p.add_argument("--reset", action="store_true", help="back to no latency, no errors, no outage")
    p.add_argument("--by", default=None, help="who makes the change (default: the OS user)")
    p.set_defaults(func=_handle)
