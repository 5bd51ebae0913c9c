"""``tradeguard traffic --url URL --rate R --profile steady|diurnal|flash-sale``: the shopper simulator."""

from __future__ import annotations

import argparse
import sys

from tradeguard.traffic import PROFILES, TrafficConfig, TrafficError, dumps_summary, run_traffic


def _handle(args: argparse.Namespace) -> int:
    try:
        config = TrafficConfig(
            url=args.url,
            rate=args.rate,
            profile=args.profile,
            multiplier=args.multiplier,
            duration=args.duration,
            seed=args.seed,
            concurrency=args.concurrency,
            timeout_s=args.timeout,
        )
    except TrafficError as exc:
        print(f"tradeguard traffic: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_traffic(config)
    except RuntimeError as exc:
        print(f"tradeguard traffic: {exc}", file=sys.stderr)
        return 1
    print(dumps_summary(summary), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "traffic",
        help="simulate shoppers: open-loop order/pay/cancel/refund traffic against a node",
        description="Requests are sent on a Poisson schedule whatever the answers take; a line per "
        "second on stderr, a JSON summary last on stdout.",
    )
    p.add_argument("--url", required=True, help="node base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--rate", type=float, default=10.0, help="base arrival rate, requests/s (default 10)")
    p.add_argument("--profile", choices=PROFILES, default="steady", help="rate over time (default steady)")
    p.add_argument("--multiplier", type=float, default=20.0, help="flash-sale peak ÷ base rate (default 20)")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=None, help="RNG seed: the same seed, the same schedule")
    p.add_argument("--concurrency", type=int, default=128, help="async workers / connections (default 128)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, s (default 5)")
    p.set_defaults(func=_handle)
