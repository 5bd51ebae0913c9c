"""The unit tests' ``Env`` on real SQL stores: SQLite files and PostgreSQL.

PostgreSQL tests use a schema of their own per test process (``tg_domain_test_<pid>``), created
fresh and dropped afterwards, so reruns and concurrent runs never see each other's rows.
"""

from __future__ import annotations

import os

from sqlalchemy import select, text

from domain.adapters import orm
from domain.adapters.unit_of_work import TradingDB, build_trading_db
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeClock, FakeGateway
from tests.unit.domain.helpers import small_catalog

PG_SCHEMA = f"tg_domain_test_{os.getpid()}"


def clean_pg(db: TradingDB) -> None:
    names = ", ".join(f'"{PG_SCHEMA}"."{t.name}"' for t in reversed(orm.metadata.sorted_tables))
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))


class SqlEnv:
    def __init__(self, db: TradingDB) -> None:
        self.db = db
        self.clock = FakeClock()
        self.gateway = FakeGateway()
        self.publisher = CollectingPublisher()
        self.service = TradingService(db.uow_factory, self.gateway, publisher=self.publisher,
                                      clock=self.clock, sleep=lambda s: None)
        self.service.seed(small_catalog())

    def stock(self, sku: str, pool: str = "default") -> tuple[int, int]:
        with self.db.uow_factory(readonly=True) as uow:
            lv = uow.inventory.level(sku, pool)
        assert lv is not None
        return lv.on_hand, lv.reserved

    def order_count(self) -> int:
        with self.db.engine.connect() as conn:
            return len(conn.execute(select(orm.orders.c.id)).all())

    def limit_used(self, buyer: str, sku: str, key: str) -> int:
        with self.db.uow_factory(readonly=True) as uow:
            return uow.limits.used(buyer, sku, key)

    def event_names(self) -> list[str]:
        return [e.name for e in self.publisher.events]


def sqlite_db(tmp_path) -> TradingDB:
    return build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")


def pg_db(url: str) -> TradingDB:
    return build_trading_db(url, schema=PG_SCHEMA, reset=True)


def drop_pg_schema(db: TradingDB) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
    db.dispose()
