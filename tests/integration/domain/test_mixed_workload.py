"""Mixed concurrent traffic (multi-line place, pay, cancel, refund) keeps the books balanced.

After the storm, for every SKU: reserved == units in unpaid orders, and
on_hand == initial - units sold + units refunded. Only domain errors may occur
(no deadlock — rows are locked in one global order —, no 'database is locked', no inconsistency).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from domain import errors
from domain.adapters import orm
from domain.model import Catalog, Product, Shop, StockLevel
from domain.services import TradingService
from tests.unit.domain.fakes import FakeGateway
from tests.unit.domain.helpers import order_cmd

SKUS = {"M1": ("m1", 40), "M2": ("m1", 30), "M3": ("m2", 25), "M4": ("m2", 60)}


def catalog() -> Catalog:
    return Catalog(shops=[Shop("m1", "M one"), Shop("m2", "M two")],
                   products=[Product(s, shop, s, 1000) for s, (shop, _) in SKUS.items()],
                   stock=[StockLevel(s, "default", n) for s, (_, n) in SKUS.items()])


def test_mixed_workload_keeps_inventory_consistent(sql_db, caplog):
    caplog.set_level(logging.DEBUG, logger="domain.services")
    service = TradingService(sql_db.uow_factory, FakeGateway())
    service.seed(catalog())
    placed: list[str] = []
    lock = threading.Lock()
    outcomes: Counter = Counter()

    def step(i: int) -> None:
        rng = random.Random(i)
        try:
            op = rng.random()
            with lock:
                known = list(placed)
            if op < 0.55 or not known:
                skus = rng.sample(sorted(SKUS), rng.randint(1, 3))
                view = service.place_order(order_cmd([(s, rng.randint(1, 3)) for s in skus],
                                                     buyer=f"b{i % 7}", key=f"k{i}"))
                with lock:
                    placed.append(view.id)
                outcomes["placed"] += 1
            elif op < 0.8:
                service.pay_order(rng.choice(known))
                outcomes["paid"] += 1
            elif op < 0.9:
                service.cancel_order(rng.choice(known))
                outcomes["cancelled"] += 1
            else:
                oid = rng.choice(known)
                order = service.get_order(oid)
                line = order.sub_orders[0].lines[0]
                refund = service.request_refund(oid, [(line.sku, 1)])
                service.complete_refund(refund.id)
                outcomes["refunded"] += 1
        except errors.DomainError as exc:
            outcomes[exc.kind] += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(step, range(600)))
    assert outcomes["placed"] > 50 and outcomes["paid"] > 10, outcomes
    assert outcomes["unavailable"] == 0, outcomes
    deadlocks = [r for r in caplog.records if "40P01" in r.getMessage()]
    assert deadlocks == [], "rows must be locked in one global order (limits, stock by SKU, order)"

    sold: Counter = Counter()
    pending: Counter = Counter()
    refunded: Counter = Counter()
    with sql_db.uow_factory(readonly=True) as uow:
        for oid in placed:
            order = uow.orders.get(oid)
            for line in order.lines:
                if order.status == "pending_payment":
                    pending[line.sku] += line.qty
                elif order.status != "cancelled":
                    sold[line.sku] += line.qty
                refunded[line.sku] += line.refunded_qty
        for sku, (_, initial) in SKUS.items():
            level = uow.inventory.level(sku, "default")
            assert level.reserved == pending[sku], sku
            assert level.on_hand == initial - sold[sku] + refunded[sku], sku
            assert 0 <= level.reserved <= level.on_hand
    with sql_db.engine.connect() as conn:
        assert len(conn.execute(select(orm.orders.c.id)).all()) == len(placed)
