from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from domain.adapters.unit_of_work import build_trading_db, normalize_url
from tests.unit.domain.helpers import order_cmd


def test_times_come_back_aware_utc(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    again = env.service.get_order(view.id)
    assert again.created_at == env.clock.now() and again.created_at.tzinfo is not None
    assert again.expires_at.utcoffset().total_seconds() == 0


def test_sqlite_pragmas_and_health(tmp_path):
    db = build_trading_db(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
    assert db.health()["status"] == "ok"
    db.dispose()


def test_build_is_idempotent_and_seed_survives(tmp_path, sql_db):
    from domain.services import TradingService
    from tests.unit.domain.fakes import FakeGateway
    from tests.unit.domain.helpers import small_catalog

    svc = TradingService(sql_db.uow_factory, FakeGateway())
    first = svc.seed(small_catalog())
    assert svc.seed(small_catalog()) == {"shops": 0, "products": 0, "stock": 0, "promotions": 0}
    assert first["shops"] == 2
    assert [s.id for s in svc.list_shops()] == ["s1", "s2"]


def test_normalize_url():
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("var/x.db") == "sqlite:///var/x.db"
    assert normalize_url("sqlite:///a.db") == "sqlite:///a.db"


def test_naive_datetime_is_refused(tmp_path):
    db = build_trading_db(f"sqlite:///{tmp_path / 'n.db'}")
    from domain.adapters.orm import UTCDateTime

    t = UTCDateTime()
    try:
        t.process_bind_param(datetime(2026, 1, 1), db.engine.dialect)
        raise AssertionError("expected ValueError")
    except ValueError:
        pass
    assert t.process_bind_param(datetime(2026, 1, 1, tzinfo=UTC), db.engine.dialect).tzinfo is None
    db.dispose()


def test_events_journaled_with_the_order_and_version_check(sql_db):
    import pytest

    from domain import errors
    from domain.services import TradingService
    from tests.unit.domain.fakes import FakeGateway
    from tests.unit.domain.helpers import small_catalog

    svc = TradingService(sql_db.uow_factory, FakeGateway())
    svc.seed(small_catalog())
    view = svc.place_order(order_cmd([("A1", 1), ("B1", 1)]))
    journal = sql_db.journal()
    assert [j["name"] for j in journal] == ["OrderPlaced", "StockReserved", "OrderPlaced", "StockReserved"]
    assert journal[0]["payload"]["order_id"] == view.id
    assert sql_db.journal(after_id=journal[-1]["id"]) == []
    # optimistic version check: a stale copy of the order cannot be saved
    with sql_db.uow_factory(readonly=True) as uow:
        stale = uow.orders.get(view.id)
    svc.cancel_order(view.id)
    with pytest.raises(errors.ConcurrentUpdate), sql_db.uow_factory() as uow:
        uow.orders.save(stale)


def test_translate_store_errors():
    import sqlite3

    from sqlalchemy.exc import IntegrityError, OperationalError

    from domain import errors
    from domain.adapters.unit_of_work import translate

    locked = OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    assert isinstance(translate(locked), errors.TransientStoreError)

    class PgDeadlock(Exception):
        sqlstate = "40P01"

    assert isinstance(translate(OperationalError("x", {}, PgDeadlock("deadlock detected, blocked"))),
                      errors.TransientStoreError)

    class PgOther(Exception):
        sqlstate = "42P01"

    assert translate(OperationalError("x", {}, PgOther("relation is blocked"))) is None
    dup = IntegrityError("x", {}, sqlite3.IntegrityError(
        "UNIQUE constraint failed: orders.buyer_id, orders.idempotency_key"))
    assert isinstance(translate(dup), errors.DuplicateKey)
    assert translate(IntegrityError("x", {}, sqlite3.IntegrityError("CHECK constraint failed"))) is None


def test_sqlite_writers_queue_on_a_lock_with_a_deadline(tmp_path, monkeypatch):
    import pytest

    from domain import errors
    from domain.adapters import unit_of_work

    monkeypatch.setattr(unit_of_work, "WRITE_LOCK_TIMEOUT_S", 0.05)
    db = build_trading_db(f"sqlite:///{tmp_path / 'w.db'}")
    assert db.write_lock is not None
    # readers never take the write lock; a writer waiting too long gets a 503-kind error
    with db.uow_factory(readonly=True), db.write_lock, pytest.raises(errors.StoreUnavailable), \
            db.uow_factory():
        pass
    with db.uow_factory() as uow:  # released again after the failure
        uow.commit()
    assert db.write_lock.acquire(blocking=False)
    db.write_lock.release()
    db.dispose()
