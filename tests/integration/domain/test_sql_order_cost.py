"""What an order costs the trading DB: statements per placement and payment, one read per row, and the
pool's ping of idle connections (instead of a ping at every checkout)."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import create_engine, event, text

from domain.adapters.repository import SqlCatalog
from domain.adapters.unit_of_work import build_trading_db
from domain.model import Shop, StockLevel, Warehouse
from tests.integration.domain.sql_env import PG_SCHEMA
from tests.services import POSTGRES_URL, need_postgres
from tests.unit.domain.helpers import order_cmd


@contextlib.contextmanager
def counted(engine):
    """Statements the engine sends (SQLite's BEGIN, sent by the unit of work, is not counted)."""
    sent: list[str] = []

    def on_execute(conn, cursor, statement, params, context, executemany):
        if not statement.startswith("BEGIN"):
            sent.append(statement.split(None, 1)[0])

    target = engine.engine
    event.listen(target, "before_cursor_execute", on_execute)
    try:
        yield sent
    finally:
        event.remove(target, "before_cursor_execute", on_execute)


def test_placing_and_paying_an_order_stays_within_its_statement_budget(env):
    env.service.place_order(order_cmd([("A3", 1)], key="warm"))  # statement caches warm
    with counted(env.db.engine) as placed:
        view = env.service.place_order(order_cmd([("A1", 1)]))
    # reads: idempotency key, catalog (products + shops + stock + warehouses), promotions;
    # writes: the stock reservation, the order, its sub-order, its line, its journal events
    assert placed == ["SELECT"] * 3 + ["UPDATE"] + ["INSERT"] * 4
    with counted(env.db.engine) as limited:
        env.service.place_order(order_cmd([("A2", 1), ("B1", 1)], key="k2"))
    assert limited.count("SELECT") == 3 and limited.count("INSERT") == 5  # the limit counter: one upsert
    assert len(limited) == 3 + 1 + 2 + 4
    with counted(env.db.engine) as paid:
        assert env.service.pay_order(view.id).status == "paid"
    # the order is read once (row + sub-orders + lines, payments, refunds), not again to record the charge
    assert paid.count("SELECT") == 3 and len(paid) <= 10
    assert env.stock("A1") == (9, 0)


def test_a_limit_counter_is_created_and_counted_in_one_statement(env):
    with env.db.uow_factory() as uow, counted(env.db.engine) as sent:
        assert uow.limits.try_consume("u1", "A2", "d:x", 2, 2)  # created at 2
        assert not uow.limits.try_consume("u1", "A2", "d:x", 1, 2)  # 3 > 2: refused, unchanged
        assert not uow.limits.try_consume("u2", "A2", "d:x", 3, 2)  # over the limit at once: no counter
        assert uow.limits.try_consume("u2", "A2", "d:x", 1, 2)
        uow.commit()
    assert len(sent) == 3  # one statement a try (none for the request over the limit itself)
    assert env.limit_used("u1", "A2", "d:x") == 2 and env.limit_used("u2", "A2", "d:x") == 1


def test_the_order_catalog_is_one_read_of_products_shops_stock_and_warehouses(env):
    with env.db.uow_factory() as uow:
        uow.catalog.add_warehouse(Warehouse("hz", "Hangzhou", "CN", "CN-ZJ"))
        uow.catalog.add_warehouse(Warehouse("sz", "Shenzhen", "CN", "CN-GD"))  # holds none of them
        uow.catalog.add_stock(StockLevel("A1", "wh:hz", 4))
        uow.commit()
    with env.db.uow_factory(readonly=True) as uow, counted(env.db.engine) as sent:
        cat = uow.catalog.for_order(["A1", "B1", "NOPE"])
        promos = uow.catalog.promotions(["s1", "s2"], ["A1", "B1"])
    assert len(sent) == 2
    assert sorted(cat.products) == ["A1", "B1"] and cat.products["A1"].price_cents == 1000
    assert sorted(cat.shops) == ["s1", "s2"] and cat.shops["s2"].name == "Beta"
    assert cat.stock[("A1", "wh:hz")].on_hand == 4 and cat.stock[("A1", "default")].on_hand == 10
    assert cat.stock[("B1", "default")].on_hand == 3 and len(cat.stock) == 3
    assert [w.id for w in cat.warehouses] == ["hz"]
    # shop-wide promotions and those of the order's SKUs; not p-amt (A3) nor p-flash (B2)
    assert [p.id for p in promos] == ["p-pct", "p-ss1", "p-ss2"]
    with env.db.uow_factory(readonly=True) as uow:
        assert [p.id for p in uow.catalog.promotions(["s1"])] == ["p-amt", "p-pct", "p-ss1", "p-ss2"]
        assert isinstance(uow.catalog, SqlCatalog)


def test_a_pooled_connection_killed_while_idle_is_replaced_before_use(pg_trading_db):
    url = need_postgres()
    db = build_trading_db(url, schema=PG_SCHEMA, idle_ping_s=0.0)  # every reuse counts as idle
    admin = create_engine(POSTGRES_URL)
    try:
        with db.uow_factory(readonly=True) as uow:
            pid = uow.conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.begin() as conn:  # e.g. a server restart or a proxy dropping idle connections
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        with db.uow_factory(readonly=True) as uow:
            assert uow.conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        admin.dispose()
        db.dispose()


def test_without_the_idle_ping_a_killed_connection_fails_its_first_statement(pg_trading_db):
    """The check above is not vacuous: a connection reused within ``idle_ping_s`` is not pinged."""
    from sqlalchemy.exc import OperationalError

    url = need_postgres()
    db = build_trading_db(url, schema=PG_SCHEMA, idle_ping_s=3600.0)
    admin = create_engine(POSTGRES_URL)
    try:
        with db.uow_factory(readonly=True) as uow:
            pid = uow.conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(OperationalError), db.uow_factory(readonly=True) as uow:
            uow.conn.execute(text("SELECT 1"))
        with db.uow_factory(readonly=True) as uow:  # the failure invalidated the pool: a new connection
            assert uow.conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        admin.dispose()
        db.dispose()


def test_a_read_only_unit_of_work_is_read_only_on_postgresql_and_ends_in_commit(pg_trading_db):
    from sqlalchemy.exc import InternalError

    from tests.integration.domain.sql_env import clean_pg

    clean_pg(pg_trading_db)
    sent: list[str] = []
    target = pg_trading_db.engine.engine
    listen = (target, "commit", lambda conn: sent.append("COMMIT"))
    event.listen(*listen)
    try:
        with pytest.raises(InternalError, match="read-only transaction"), \
                pg_trading_db.uow_factory(readonly=True) as uow:  # e.g. a bug writing in a read
            uow.catalog.add_shop(Shop("s9", "Nine"))
        with pg_trading_db.uow_factory(readonly=True) as uow:
            assert uow.catalog.shop("s9") is None
    finally:
        event.remove(*listen)
    assert sent == ["COMMIT"]  # the read that ran through; the failed one rolled back
