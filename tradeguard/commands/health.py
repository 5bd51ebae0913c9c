"""``tradeguard health [--url URL]``: a node's /ops/health (exit 0 ok, 1 degraded/down, 2 unreachable)."""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from common.redact import redact_text, redact_url
from tradeguard.settings import load_settings


def _handle(args: argparse.Namespace) -> int:
    if args.url:
        url = args.url.rstrip("/")
    else:
        s = load_settings()
        url = f"http://{s.node_host}:{s.node_port}"
    try:
        response = httpx.get(f"{url}/ops/health", timeout=args.timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        shown = redact_url(f"{url}/ops/health")
        print(f"tradeguard health: no answer from {shown}: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    print(json.dumps(body, indent=None if args.json else 2))
    return 0 if body.get("status") == "ok" else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("health", help="show a node's health (its stores, rule watcher, metrics)")
    p.add_argument("--url", default=None, help="node base URL (default http://NODE_HOST:NODE_PORT)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=_handle)
