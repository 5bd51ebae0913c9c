"""A seeded set of orders, discounts and refunds of two shops over two periods, with the figures
computed by hand (for the Sales page tests, AppTest and browser).

"Now" is Thu 2026-11-12 10:00 UTC. The period asked is Tue 11-10 .. Wed 11-11 (2 days); the previous
period is Sun 11-08 .. Mon 11-09. Shop ``shop-b`` has large, recognisable figures that must never
show for a merchant of ``shop-a``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import insert

from collectors.query import Point
from domain.adapters import orm

APP = "shop"
NOW = datetime(2026, 11, 12, 10, 0, tzinfo=UTC)
FIRST, LAST = date(2026, 11, 10), date(2026, 11, 11)


def _t(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def _order(at, shop, channel, tx, *, placed, paid, gmv, discount, items, cancelled=0) -> Point:
    return Point(
        "orders",
        {"app": APP, "shop": shop, "channel": channel, "tx_type": tx},
        {"placed": placed, "paid": paid, "cancelled": cancelled, "gmv": gmv, "paid_amount": gmv,
         "discount": discount, "items": items},
        at,
    )


def _delivery(at, shop, tx, carrier="-", **fields) -> Point:
    names = ("shipped", "delivered", "received", "auto_received", "failed", "cod_collected", "cod_amount")
    return Point("deliveries", {"app": APP, "shop": shop, "tx_type": tx, "carrier": carrier},
                 {n: fields.get(n, 0) for n in names}, at)


def _refund(at, shop, *, requested, completed, amount) -> Point:
    return Point("refunds", {"app": APP, "shop": shop},
                 {"requested": requested, "completed": completed, "amount": amount}, at)


POINTS = [
    # shop-a, this period
    _order(_t(10, 9, 15), "shop-a", "app", "fixed_price", placed=4, paid=3, cancelled=1, gmv=400.00,
           discount=40.00, items=6),
    _order(_t(10, 20, 30, 5), "shop-a", "web", "flash_sale", placed=2, paid=2, gmv=150.50, discount=9.50,
           items=3),
    _order(_t(11, 20, 45), "shop-a", "app", "flash_sale", placed=4, paid=3, gmv=249.99, discount=0.01,
           items=5),
    _refund(_t(11, 12), "shop-a", requested=2, completed=1, amount=55.25),
    # shop-a, fulfilment this period
    _delivery(_t(10, 12), "shop-a", "fixed_price", "SF", shipped=3),
    _delivery(_t(10, 12, 0, 1), "shop-a", "fixed_price", "YTO", shipped=1),
    _delivery(_t(11, 8), "shop-a", "cod", "SF", shipped=2),
    _delivery(_t(11, 9), "shop-a", "fixed_price", delivered=3, received=2, auto_received=1),
    _delivery(_t(11, 10), "shop-a", "cod", delivered=1, failed=1, cod_collected=1, cod_amount=49.90),
    # shop-a, previous period
    _delivery(_t(9, 10), "shop-a", "fixed_price", "SF", shipped=50, delivered=40),
    _order(_t(8, 10), "shop-a", "app", "fixed_price", placed=5, paid=5, gmv=500.00, discount=0.0, items=5),
    # shop-a, today (for the live strip): 3 in the last 5 minutes, 1 earlier
    _order(_t(12, 9, 57), "shop-a", "app", "flash_sale", placed=3, paid=2, gmv=30.00, discount=0.0, items=3),
    _order(_t(12, 8, 0), "shop-a", "web", "fixed_price", placed=1, paid=1, gmv=10.00, discount=0.0, items=1),
    # shop-b: must never show to shop-a's merchant
    _order(_t(10, 11), "shop-b", "marketplace", "auction", placed=999, paid=998, gmv=99999.99,
           discount=777.77, items=4242),
    _refund(_t(11, 11), "shop-b", requested=5, completed=4, amount=1234.56),
    _delivery(_t(10, 11), "shop-b", "auction", "SecretCarrier", shipped=4242, delivered=4242, received=4242,
              cod_collected=999, cod_amount=77777.77),
    _order(_t(12, 9, 58), "shop-b", "marketplace", "auction", placed=555, paid=555, gmv=5555.55,
           discount=0.0, items=555),
]

SKU_ROWS = [
    {"shop_id": "shop-a", "sku": "A-1", "period": _t(10, 9), "units": 5, "revenue_cents": 30000,
     "refunded_units": 1, "refunded_cents": 5525},
    {"shop_id": "shop-a", "sku": "A-2", "period": _t(11, 20), "units": 9, "revenue_cents": 12000,
     "refunded_units": 0, "refunded_cents": 0},
    {"shop_id": "shop-a", "sku": "A-3", "period": _t(8, 10), "units": 1, "revenue_cents": 50000,
     "refunded_units": 0, "refunded_cents": 0},  # previous period: not in this period's top
    {"shop_id": "shop-b", "sku": "B-SECRET", "period": _t(10, 11), "units": 4242, "revenue_cents": 9999999,
     "refunded_units": 0, "refunded_cents": 0},
]

# Hand-computed, shop-a, 11-10..11-11 (money in cents):
#   placed 4+2+4 = 10, paid 3+2+3 = 8, units 6+3+5 = 14
#   gmv 400.00+150.50+249.99 = 800.49, discounts 40.00+9.50+0.01 = 49.51 → gross 850.00
#   refunds 55.25 → net 850.00 − 49.51 − 55.25 = 745.24
#   AOV (gross − discounts) / orders = 800.49 / 10 = 80.049 → 80.05
#   refund rate 1 / 8 = 12.5 %, paid conversion 8 / 10 = 80.0 %
# previous (11-08..11-09): placed 5, paid 5, units 5, gross 500.00, net 500.00, AOV 100.00, rate 0 %, 100 %
EXPECTED = {
    "Net sales": ("¥745.24", "¥500.00", 49.048),
    "Orders": ("10", "5", 100.0),
    "Average order value": ("¥80.05", "¥100.00", -19.95),
    "Units sold": ("14", "5", 180.0),
    "Refund rate": ("12.5 %", "0.0 %", None),  # none in the previous period: change "new"
    "Paid conversion": ("80.0 %", "100.0 %", -20.0),
}
SHOP_B_MARKERS = ("99,999.99", "777.77", "1,234.56", "4,242", "B-SECRET", "marketplace", "auction", "999",
                  "5,555.55", "555", "SecretCarrier", "77,777.77")
# shop-a's fulfilment in 11-10..11-11: shipped 3+1+2 = 6 (SF 5, YTO 1), delivered 3+1 = 4, received 2
# (1 automatically), failed 1, cash collected 1 = ¥49.90; the previous period's 50 shipped do not count
FULFILMENT = {"Shipped": "6", "Delivered": "4", "Received": "2", "Delivery failed": "1",
              "Cash collected on delivery": "¥49.90"}


def seed(metrics, trading_engine=None) -> None:
    metrics.write(POINTS)
    if trading_engine is not None:
        with trading_engine.begin() as conn:
            conn.execute(insert(orm.sku_sales_hourly), SKU_ROWS)
