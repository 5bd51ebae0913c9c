"""``tradeguard apikeys add NAME --origin ORIGIN | list | revoke NAME``: callers' API keys.

A caller presenting ``X-Api-Key: KEY`` is given its key's origin (``limit_app`` flow rules,
authority rules). ``add`` prints the key once; the control DB keeps only its SHA-256.
"""

from __future__ import annotations

import argparse
import json
import sys

from tradeguard.origins import ApiKeyError
from tradeguard.settings import load_settings


def _handle(args: argparse.Namespace) -> int:
    from tradeguard.bootstrap import open_api_keys

    store = open_api_keys(load_settings())
    try:
        if args.action == "add":
            if not args.origin:
                raise ApiKeyError("--origin: required with add (the origin this key's caller gets)")
            key = store.add(args.name, args.origin)
            print(json.dumps({"name": args.name, "origin": args.origin, "key": key}))
            print("store the key now: it is not shown again", file=sys.stderr)
        elif args.action == "list":
            print(json.dumps([k.as_dict() for k in store.list()], indent=2))
        else:
            if not store.revoke(args.name):
                raise ApiKeyError(f"name: no live API key named {args.name!r}")
            print(json.dumps({"name": args.name, "revoked": True}))
    except ApiKeyError as exc:
        print(f"tradeguard apikeys: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "apikeys",
        help="manage callers' API keys (a key gives its caller an origin)",
        description="Keys are stored hashed in the control DB; `add` prints the key once.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    a = sub.add_parser("add", help="create a key for NAME with --origin ORIGIN; prints it once")
    a.add_argument("name")
    a.add_argument("--origin", required=True, help="the origin callers with this key get")
    sub.add_parser("list", help="the keys (names, origins, dates; never the keys)")
    r = sub.add_parser("revoke", help="revoke NAME's key (nodes stop honouring it within 5 s)")
    r.add_argument("name")
    p.set_defaults(func=_handle)
