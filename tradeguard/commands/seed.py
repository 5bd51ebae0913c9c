"""``tradeguard seed``: write the demo catalog (shops, products, stock, promotions); idempotent."""

from __future__ import annotations

import argparse
import json

from tradeguard.settings import load_settings


def _handle(args: argparse.Namespace) -> int:
    from common.redact import redact_url
    from tradeguard.bootstrap import seed_catalog

    settings = load_settings()
    created = seed_catalog(settings)
    print(json.dumps({"trading_db": redact_url(settings.trading_db), "created": created}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "seed",
        help="create the demo shops, products, stock and promotions (idempotent)",
        description="Writes what is missing into TRADEGUARD_TRADING_DB; never resets stock.",
    )
    p.set_defaults(func=_handle)
