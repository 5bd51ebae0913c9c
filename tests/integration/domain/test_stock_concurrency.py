"""Stock is never oversold: 8 threads place 1,600 orders for 100 units, on SQLite and PostgreSQL.

Also race-safety of the flash-sale per-buyer limit and of the idempotency key.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from domain import errors
from domain.adapters import orm
from domain.model import Catalog, Product, Promotion, Shop, StockLevel
from domain.services import TradingService
from tests.unit.domain.fakes import FakeGateway
from tests.unit.domain.helpers import order_cmd

THREADS = 8
ORDERS = 1_600
UNITS = 100


def hot_catalog() -> Catalog:
    return Catalog(
        shops=[Shop("hot", "Hot shop")],
        products=[Product("HOT", "hot", "Hot item", 999), Product("FL", "hot", "Flash item", 5000)],
        stock=[StockLevel("HOT", "default", UNITS), StockLevel("FL", "default", 0),
               StockLevel("FL", "flash", 50)],
        promotions=[Promotion("fl", "hot", "flash_price", sku="FL", price_cents=100, stock=50,
                              per_buyer_limit=2)],
    )


def run_parallel(n: int, fn) -> Counter:
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            fn(i)
            result = "ok"
        except errors.DomainError as exc:
            result = exc.kind
        with lock:
            outcomes[result] += 1

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(n)))
    return outcomes


def test_1600_orders_for_100_units_never_oversell(sql_db):
    service = TradingService(sql_db.uow_factory, FakeGateway())
    service.seed(hot_catalog())
    outcomes = run_parallel(ORDERS, lambda i: service.place_order(
        order_cmd([("HOT", 1)], buyer=f"b{i}", key=f"k{i}")))
    assert outcomes == Counter({"ok": UNITS, "out_of_stock": ORDERS - UNITS})
    with sql_db.engine.connect() as conn:
        inv = conn.execute(select(orm.inventory).where(orm.inventory.c.sku == "HOT")).one()
        assert (inv.on_hand, inv.reserved) == (UNITS, UNITS)
        assert conn.execute(select(func.count()).select_from(orm.orders)).scalar() == UNITS
        assert conn.execute(select(func.sum(orm.order_lines.c.qty))).scalar() == UNITS
    # paying them all sells exactly the stock, never below zero
    view_ids = [r for r in _order_ids(sql_db)]
    for oid in view_ids[:10]:
        service.pay_order(oid)
    with sql_db.engine.connect() as conn:
        inv = conn.execute(select(orm.inventory).where(orm.inventory.c.sku == "HOT")).one()
    assert (inv.on_hand, inv.reserved) == (UNITS - 10, UNITS - 10)


def _order_ids(db) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(orm.orders.c.id)).scalars())


def test_flash_per_buyer_limit_is_race_safe(sql_db):
    service = TradingService(sql_db.uow_factory, FakeGateway())
    service.seed(hot_catalog())
    outcomes = run_parallel(64, lambda i: service.place_order(
        order_cmd([("FL", 1)], buyer="greedy", key=f"k{i}", tx_type="flash_sale")))
    assert outcomes == Counter({"ok": 2, "limit": 62})
    with sql_db.uow_factory(readonly=True) as uow:
        assert uow.inventory.level("FL", "flash").reserved == 2
        assert uow.limits.used("greedy", "FL", "flash:fl") == 2


def test_idempotency_key_race_makes_one_order(sql_db):
    service = TradingService(sql_db.uow_factory, FakeGateway())
    service.seed(hot_catalog())
    ids: list[str] = []
    outcomes = run_parallel(32, lambda i: ids.append(service.place_order(
        order_cmd([("HOT", 2)], buyer="same", key="same-key")).id))
    assert outcomes == Counter({"ok": 32})
    assert len(set(ids)) == 1
    with sql_db.uow_factory(readonly=True) as uow:
        assert uow.inventory.level("HOT", "default").reserved == 2
