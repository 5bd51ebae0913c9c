"""``tradeguard demo [--headless] [--duration S] [--port P]``: seed, node, traffic (+ worker, console)."""

from __future__ import annotations

import argparse
import sys

from tradeguard.settings import load_settings
from tradeguard.traffic import PROFILES


def _handle(args: argparse.Namespace) -> int:
    from tradeguard.demo import DemoOptions, run_demo

    if args.duration is not None and args.duration <= 0:
        print(f"tradeguard demo: --duration must be > 0 seconds, got {args.duration}", file=sys.stderr)
        return 2
    if args.headless and args.duration is None:
        args.duration = 60.0
    settings = load_settings()
    opts = DemoOptions(
        headless=args.headless,
        duration=args.duration,
        host=args.host or settings.node_host,
        port=args.port,
        console_port=args.console_port,
        strict_port=args.strict_port,
        rate=args.rate,
        profile=args.profile,
        multiplier=args.multiplier,
        seed=args.seed,
        rules=not args.no_rules,
    )
    return run_demo(settings, opts)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run everything on SQLite under ./var: seed, node, traffic, worker, console",
        description="Prints one URL per line (`node: http://HOST:PORT`), then a JSON summary last. "
        "Ctrl-C stops every child cleanly.",
    )
    p.add_argument("--headless", action="store_true", help="no console; stop after --duration (default 60 s)")
    p.add_argument("--duration", type=float, default=None, help="seconds of traffic, then stop")
    p.add_argument("--port", type=int, default=None, help="node port (default TRADEGUARD_NODE_PORT or 8000)")
    p.add_argument("--console-port", type=int, default=None, help="console port (default 8501)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--strict-port", action="store_true", help="fail if a port is taken (default: next free one)"
    )
    p.add_argument("--rate", type=float, default=10.0, help="base traffic rate, requests/s (default 10)")
    p.add_argument(
        "--profile", choices=PROFILES, default="flash-sale", help="traffic profile (default flash-sale)"
    )
    p.add_argument("--multiplier", type=float, default=10.0, help="flash-sale surge multiplier (default 10)")
    p.add_argument("--seed", type=int, default=None, help="traffic RNG seed")
    p.add_argument("--no-rules", action="store_true", help="do not apply guardians' demo rules")
    p.set_defaults(func=_handle)
