"""``tradeguard traffic --url URL --rate R --profile steady|diurnal|flash-sale``: the shopper simulator."""

from __future__ import annotations

import argparse
import sys

from tradeguard.settings import load_settings
from tradeguard.traffic import (
    PROFILES,
    TrafficConfig,
    TrafficError,
    dumps_summary,
    parse_tx_mix,
    run_traffic,
)


def _handle(args: argparse.Namespace) -> int:
    settings = load_settings()  # flags left out default to TRADEGUARD_TRAFFIC_* (e.g. in compose)
    url = args.url or settings.traffic_url
    if not url:
        print("tradeguard traffic: --url (or TRADEGUARD_TRAFFIC_URL) is required, e.g. "
              "http://127.0.0.1:8000", file=sys.stderr)
        return 2
    try:
        config = TrafficConfig(
            url=url,
            rate=args.rate if args.rate is not None else settings.traffic_rate,
            profile=args.profile or settings.traffic_profile,
            multiplier=args.multiplier if args.multiplier is not None else settings.traffic_multiplier,
            duration=args.duration,
            seed=args.seed,
            concurrency=args.concurrency,
            timeout_s=args.timeout,
            ops_token=settings.ops_token_value(),  # refund completion is a merchant action
            tx_mix=parse_tx_mix(args.tx_mix) if args.tx_mix else None,
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
    p.add_argument("--url", help="node base URL, e.g. http://127.0.0.1:8000 (default TRADEGUARD_TRAFFIC_URL)")
    p.add_argument("--rate", type=float,
                   help="base arrival rate, requests/s (default TRADEGUARD_TRAFFIC_RATE, 10)")
    p.add_argument("--profile", choices=PROFILES,
                   help="rate over time (default TRADEGUARD_TRAFFIC_PROFILE, steady)")
    p.add_argument("--multiplier", type=float,
                   help="flash-sale peak ÷ base rate (default TRADEGUARD_TRAFFIC_MULTIPLIER, 20)")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=None, help="RNG seed: the same seed, the same schedule")
    p.add_argument("--concurrency", type=int, default=128, help="async workers / connections (default 128)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, s (default 5)")
    p.add_argument("--tx-mix", default=None, metavar="TYPE=W,...",
                   help="share of order placements per transaction type, e.g. fixed_price=80,presale=10,"
                        "cod=10 (types: fixed_price, flash_sale, presale, cod, auction = bids on the seed's "
                        "auction; presale balances paid in their window, COD delivered; default: "
                        "fixed_price, plus "
                        "flash_sale by --profile)")
    p.set_defaults(func=_handle)
