"""The relay counts presale stages and cash on delivery right in the ``orders`` figures."""

from __future__ import annotations

from datetime import UTC, datetime

from collectors.relay import business_points
from domain.adapters.journal import JournalRow

T = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def sub(tx_type: str, **kw):
    return {"shop_id": "s", "channel": "app", "tx_type": tx_type, "sub_order_id": "so", **kw}


def test_presale_deposit_and_balance_count_once_and_cod_on_collection():
    rows = [
        JournalRow(1, 0, "OrderPlaced", T, "o1", sub("presale", amount_cents=45000, items=1)),
        JournalRow(2, 0, "OrderPaid", T, "o1", sub("presale", amount_cents=5000, stage="deposit")),
        JournalRow(3, 0, "OrderPaid", T, "o1", sub("presale", amount_cents=40000, stage="balance")),
        JournalRow(4, 0, "OrderPlaced", T, "o2", sub("cod", amount_cents=2000, items=2)),
        JournalRow(5, 0, "OrderConfirmed", T, "o2", sub("cod", amount_cents=2000)),
        JournalRow(6, 0, "OrderPaid", T, "o2", sub("cod", amount_cents=2000)),
        JournalRow(7, 0, "OrderPlaced", T, "o3", sub("presale", amount_cents=45000, items=1)),
        JournalRow(8, 0, "OrderPaid", T, "o3", sub("presale", amount_cents=5000, stage="deposit")),
    ]
    got = {p.tags["tx_type"]: p.fields for p in business_points(rows, app="tg") if p.measurement == "orders"}
    assert got["presale"]["placed"] == 2 and got["presale"]["paid"] == 1
    assert got["presale"]["gmv"] == 900.0 and got["presale"]["paid_amount"] == 500.0
    assert got["cod"]["placed"] == 1 and got["cod"]["paid"] == 1 and got["cod"]["paid_amount"] == 20.0
