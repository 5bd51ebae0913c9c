"""cod / presale / auction on SQLite and PostgreSQL: state round-trips, and concurrency on the last units."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from domain import errors
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeClock, FakeGateway
from tests.unit.domain.helpers import order_cmd
from tests.unit.domain.txtype_helpers import BALANCE_CLOSES, BALANCE_OPENS, START, tx_catalog


class SqlTx:
    def __init__(self, db) -> None:
        self.db = db
        self.clock = FakeClock(START)
        self.gateway = FakeGateway()
        self.publisher = CollectingPublisher()
        self.service = TradingService(db.uow_factory, self.gateway, publisher=self.publisher,
                                      clock=self.clock, sleep=lambda s: None)
        self.service.seed(tx_catalog())

    def stock(self, sku: str) -> tuple[int, int]:
        with self.db.uow_factory(readonly=True) as uow:
            lv = uow.inventory.level(sku, "default")
        return lv.on_hand, lv.reserved

    def place(self, lines, tx_type, key="k1", buyer="u1", stage=None):
        cmd = order_cmd(lines, buyer=buyer, key=key, tx_type=tx_type)
        return self.service.place_order(replace(cmd, extra={"stage": stage}) if stage else cmd)


@pytest.fixture
def tx(sql_db):
    return SqlTx(sql_db)


def test_cod_life_on_sql(tx):
    view = tx.place([("C1", 2)], "cod")
    assert tx.service.get_order(view.id).status == "confirmed"
    sub = view.sub_orders[0].id
    tx.service.ship(sub, "SF", "T1")
    done = tx.service.deliver(sub, collected=True)
    again = tx.service.get_order(view.id)
    assert done.status == again.status == "paid" and again.cash_on_delivery
    assert tx.stock("C1") == (8, 0)
    other = tx.place([("C1", 1)], "cod", key="k2")
    tx.service.ship(other.sub_orders[0].id, "SF", "T2")
    tx.service.deliver(other.sub_orders[0].id, collected=False)
    assert tx.service.get_order(other.id).sub_orders[0].delivery_status == "failed"
    assert tx.stock("C1") == (8, 0)


def test_presale_life_on_sql(tx):
    view = tx.place([("P1", 1)], "presale", stage="deposit")
    tx.service.pay_order(view.id, stage="deposit")
    loaded = tx.service.get_order(view.id)
    assert loaded.status == "deposit_paid" and loaded.presale.stage == "balance"
    assert loaded.expires_at == BALANCE_CLOSES and [p.stage for p in loaded.payments] == ["deposit"]
    lapsing = tx.place([("P1", 1)], "presale", key="k2", buyer="u2", stage="deposit")
    tx.service.pay_order(lapsing.id)
    tx.clock.t = BALANCE_OPENS
    assert tx.service.pay_order(view.id, stage="balance").status == "paid"
    tx.clock.t = BALANCE_CLOSES
    assert tx.service.forfeit_presales() == 1
    assert tx.service.get_order(lapsing.id).presale.deposit_outcome == "forfeited"
    assert tx.stock("P1") == (2, 0)


def test_parallel_presale_deposits_on_the_last_units(tx):
    """3 units, 12 buyers placing presale deposits at once: exactly 3 orders, never oversold."""
    results: list[str] = []
    barrier = threading.Barrier(12)

    def buyer(i: int) -> None:
        barrier.wait()
        try:
            tx.place([("P1", 1)], "presale", key=f"k{i}", buyer=f"b{i}", stage="deposit")
            results.append("ok")
        except errors.OutOfStock:
            results.append("out")

    threads = [threading.Thread(target=buyer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 3 and results.count("out") == 9
    assert tx.stock("P1") == (3, 3)


def test_parallel_bids_are_serialized(tx):
    """8 threads × 10 bids each, amounts spaced by the increment: no lost update — the final price is the
    highest bid, the accepted bids were strictly increasing, and every accepted bid has its row."""
    from datetime import timedelta

    from sqlalchemy import select

    from domain.adapters import orm

    a = tx.service.create_auction(sku="N1", start_price_cents=100, increment_cents=10, reserve_cents=0,
                                  starts_at=START, ends_at=START + timedelta(hours=1))
    accepted: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def bidder(t: int) -> None:
        barrier.wait()
        for k in range(10):
            amount = 100 + 10 * (k * 8 + t)
            try:
                tx.service.place_bid(a.id, f"b{t}", amount)
                with lock:
                    accepted.append(amount)
            except errors.Conflict as exc:
                with lock:
                    refused.append(exc.rule)

    threads = [threading.Thread(target=bidder, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    view = tx.service.get_auction(a.id)
    top = 100 + 10 * 79
    assert view.current_cents == top and view.leader_buyer_id == "b7"
    assert view.bid_count == len(accepted) and len(accepted) + len(refused) == 80
    assert set(refused) <= {"auction.bid_too_low"}
    with tx.db.engine.connect() as conn:
        rows = conn.execute(select(orm.auction_bids.c.amount_cents)
                            .where(orm.auction_bids.c.auction_id == a.id)).scalars().all()
    assert sorted(rows) == sorted(accepted) and len(set(rows)) == len(rows)
