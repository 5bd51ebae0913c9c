"""``tradeguard bench relay``'s journal writer (step 3) writes what the trading core writes: its
pipelined PostgreSQL transactions leave the same rows and journal events as the trading core's own
units of work, so the relay's lag at the target rate is measured on the real shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select

from bench.relay import _bench_order, _PipelineWriter, _service, _UowWriter
from domain.adapters import orm
from tests.integration.domain.sql_env import clean_pg


def _journal(db, order_id: str) -> list[tuple[str, dict]]:
    t = orm.domain_events.c
    with db.engine.connect() as conn:
        rows = conn.execute(select(t.name, t.payload).where(t.order_id == order_id).order_by(t.id)).all()
    return [(name, json.loads(payload)) for name, payload in rows]


def _comparable(payload: dict) -> dict:
    ids = ("order_id", "sub_order_id", "payment_id", "buyer_id", "occurred_at", "latency_ms")
    return {k: v for k, v in payload.items() if k not in ids}


def test_the_pipelined_writer_leaves_the_rows_and_events_of_the_units_of_work(pg_trading_db):
    db = pg_trading_db
    clean_pg(db)
    _service(db)  # the bench's catalog
    now = datetime.now(UTC)
    by_uow, piped = _bench_order("u", 7, now), _bench_order("p", 7, now)
    uow_writer, pipe_writer = _UowWriter(db), _PipelineWriter(db.url, db.schema)
    try:
        uow_writer.place(by_uow)
        uow_writer.pay(by_uow)
        pipe_writer.place(piped)
        pipe_writer.pay(piped)
    finally:
        pipe_writer.close()
    with db.uow_factory(readonly=True) as uow:
        a, b = uow.orders.get(by_uow.id), uow.orders.get(piped.id)
        level = uow.inventory.level("P7", "default")
    assert a is not None and b is not None
    assert (a.status, b.status) == ("paid", "paid") and a.version == b.version == 1
    assert [(s.shop_id, s.status) for s in a.sub_orders] == [(s.shop_id, s.status) for s in b.sub_orders]
    assert [(li.sku, li.qty, li.amount_cents, li.pool) for li in a.lines] == \
           [(li.sku, li.qty, li.amount_cents, li.pool) for li in b.lines]
    assert [(p.status, p.amount_cents) for p in a.payments] == \
           [(p.status, p.amount_cents) for p in b.payments]
    assert level is not None and (level.on_hand, level.reserved) == (10_000_000 - 2, 0)  # both sold
    ja, jb = _journal(db, a.id), _journal(db, b.id)
    assert [n for n, _ in ja] == [n for n, _ in jb] == ["OrderPlaced", "StockReserved", "PaymentSucceeded",
                                                        "OrderPaid"]
    assert [_comparable(p) for _, p in ja] == [_comparable(p) for _, p in jb]
