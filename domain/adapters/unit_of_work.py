"""SQLAlchemy unit of work and the trading DB factory.

``build_trading_db(url)`` accepts any SQLAlchemy URL. SQLite gets WAL, a busy
timeout, foreign keys, and explicit transactions: a writing unit of work starts
with ``BEGIN IMMEDIATE`` (takes the write lock up front and waits for it through
the busy timeout, instead of failing later with "database is locked" on lock
upgrade); a read-only one uses a plain deferred ``BEGIN`` (WAL readers never
block). Store errors worth retrying (SQLite busy/locked, PostgreSQL
serialization failure or deadlock, a concurrent insert of the same idempotency
key) surface as ``domain.errors.TransientStoreError``; the service retries.

A pooled PostgreSQL connection is pinged before use only when it sat idle for
``IDLE_PING_S`` (a restarted server or a dropped idle connection is found there);
pinging at every checkout cost a round trip per unit of work, 2–3 per order. A read-only
unit of work is ``BEGIN READ ONLY`` on PostgreSQL and ends in COMMIT (see ``_rollback``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidatePoolError, OperationalError, SQLAlchemyError

from common.redact import redact_url
from common.sql import create_tables
from domain.adapters import orm
from domain.adapters.auctions import SqlAuctions
from domain.adapters.repository import SqlCatalog, SqlInventory, SqlLimits, SqlOrderRepository
from domain.errors import DuplicateKey, StoreUnavailable, TransientStoreError
from domain.events import DomainEvent
from domain.storage import AbstractUnitOfWork

log = logging.getLogger(__name__)

WRITE_LOCK_TIMEOUT_S = 10.0
IDLE_PING_S = 5.0  # a pooled connection idle longer than this is pinged before use
_INSERT_EVENTS = insert(orm.domain_events)
_TRANSIENT_PG = {"40001", "40P01", "55P03"}  # serialization_failure, deadlock_detected, lock_not_available


def translate(exc: BaseException) -> BaseException | None:
    """The TransientStoreError for a DB error worth retrying, else None."""
    if isinstance(exc, IntegrityError):
        msg = str(exc.orig)
        if "uq_orders_buyer_idempotency_key" in msg or ("orders.buyer_id" in msg and "UNIQUE" in msg):
            return DuplicateKey("another request just placed an order with this idempotency key")
        return None
    if not isinstance(exc, DBAPIError):
        return None
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code in _TRANSIENT_PG:
        return TransientStoreError(f"postgresql {code}: {exc.orig}")
    if isinstance(exc, OperationalError) and type(exc.orig).__module__.startswith("sqlite3"):
        msg = str(exc.orig).lower()
        if "database is locked" in msg or "busy" in msg:
            return TransientStoreError(f"sqlite busy: {exc.orig}")
    return None


_EVENT_FIELDS: dict[type, tuple[str, ...]] = {}


def event_row(e: DomainEvent) -> dict[str, Any]:
    # events are flat frozen dataclasses: read their fields directly (``asdict`` deep-copies each value)
    names = _EVENT_FIELDS.get(type(e))
    if names is None:
        names = _EVENT_FIELDS[type(e)] = tuple(f.name for f in fields(e))
    payload = {n: getattr(e, n) for n in names}
    return {"occurred_at": e.occurred_at, "name": e.name, "order_id": payload.get("order_id"),
            "payload": json.dumps(payload, default=str, sort_keys=True)}


class SqlUnitOfWork(AbstractUnitOfWork):
    def __init__(self, engine: Engine, *, readonly: bool = False,
                 write_lock: threading.Lock | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.readonly = readonly
        self.conn: Connection | None = None
        self._write_lock = None if readonly else write_lock
        self._locked = False

    def __enter__(self) -> SqlUnitOfWork:
        super().__enter__()
        if self._write_lock is not None:
            # SQLite has one writer at a time; queueing this process's writers on a lock is fairer and
            # much faster than SQLite's sleeping busy handler (kept for writers in other processes).
            if not self._write_lock.acquire(timeout=WRITE_LOCK_TIMEOUT_S):
                raise StoreUnavailable(  # not retried: the queue is already that long
                    f"the trading DB had no write slot within {WRITE_LOCK_TIMEOUT_S:g} s; retry shortly",
                    rule="store.write_slot")
            self._locked = True
        try:
            conn = self.engine.connect()
            if self.readonly and conn.dialect.name == "postgresql":
                conn.execution_options(postgresql_readonly=True)  # BEGIN READ ONLY: no extra round trip
            conn.info["tg_begin"] = "BEGIN" if self.readonly else "BEGIN IMMEDIATE"
            try:
                conn.begin()
            except DBAPIError as exc:
                conn.close()
                mapped = translate(exc)
                if mapped is not None:
                    raise mapped from exc
                raise
        except BaseException:
            self._unlock()
            raise
        self.conn = conn
        self.orders = SqlOrderRepository(conn)
        self.catalog = SqlCatalog(conn)
        self.inventory = SqlInventory(conn)
        self.limits = SqlLimits(conn)
        self.auctions = SqlAuctions(conn)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if self.readonly and exc_type is None and self.conn is not None and self._end_read():
                self.committed = True
            super().__exit__(exc_type, exc, tb)
        finally:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            self._unlock()
        if isinstance(exc, DBAPIError):
            mapped = translate(exc)
            if mapped is not None:
                raise mapped from exc

    def _unlock(self) -> None:
        if self._locked and self._write_lock is not None:
            self._locked = False
            self._write_lock.release()

    def _commit(self) -> None:
        assert self.conn is not None
        events = self.pending_events()
        if events:
            self.conn.execute(_INSERT_EVENTS, [event_row(e) for e in events])
        self.conn.commit()

    def _end_read(self) -> bool:
        """A read-only unit of work that ran through ends in COMMIT: it has nothing to undo, and
        psycopg drops its prepared statements at every ROLLBACK (DEALLOCATE ALL), so reads ending in
        one would leave the connection with none prepared. False if the COMMIT failed."""
        try:
            self.conn.commit()  # type: ignore[union-attr]
            return True
        except SQLAlchemyError:
            log.warning("ending a read-only transaction failed; rolling back", exc_info=True)
            return False

    def _rollback(self) -> None:
        if self.conn is not None:
            try:
                self.conn.rollback()
            except DBAPIError:
                log.warning("rollback failed", exc_info=True)


@dataclass
class TradingDB:
    engine: Engine
    url: str
    schema: str | None = None
    write_lock: threading.Lock | None = field(default=None, repr=False)  # SQLite: one writer at a time

    def uow_factory(self, *, readonly: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, readonly=readonly, write_lock=self.write_lock)

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"|"down", "backend": ..., "detail": ...}`` for GET /ops/health."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return {"status": "ok", "backend": self.engine.dialect.name}
        except Exception as exc:
            return {"status": "down", "backend": self.engine.dialect.name, "detail": str(exc)}

    def journal(self, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Journaled domain events with id > ``after_id``: ``{"id", "name", "occurred_at", "payload"}``."""
        t = orm.domain_events
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)).mappings()
            return [{"id": r["id"], "name": r["name"], "occurred_at": r["occurred_at"],
                     "payload": json.loads(r["payload"])} for r in rows]

    def drop_all(self) -> None:
        orm.metadata.drop_all(self.engine)

    def create_all(self) -> None:
        create_tables(orm.metadata, self.engine)
        add_missing_columns(self.engine, self.schema)

    def dispose(self) -> None:
        self.engine.dispose()


def add_missing_columns(engine: Engine, schema: str | None = None) -> list[str]:
    """``ALTER TABLE … ADD COLUMN`` for columns a DB made by an older version lacks (all of them are
    nullable or have a server default); returns ``table.column`` of those added."""
    added: list[str] = []
    with engine.begin() as conn:
        insp = inspect(conn)
        for table in orm.metadata.sorted_tables:
            if not insp.has_table(table.name, schema=schema):
                continue
            have = {c["name"] for c in insp.get_columns(table.name, schema=schema)}
            qualified = f'"{schema}"."{table.name}"' if schema else f'"{table.name}"'
            for col in table.columns:
                if col.name in have:
                    continue
                ddl = f'ALTER TABLE {qualified} ADD COLUMN "{col.name}" ' \
                      f"{col.type.compile(dialect=conn.dialect)}"
                if col.server_default is not None:
                    default = col.server_default.arg  # type: ignore[attr-defined]
                    text_default = default if isinstance(default, str) else str(
                        default.compile(dialect=conn.dialect))
                    shown = repr(text_default) if isinstance(default, str) else text_default
                    ddl += f" DEFAULT {shown}"
                    ddl += " NOT NULL" if not col.nullable else ""
                conn.execute(text(ddl))
                added.append(f"{table.name}.{col.name}")
    if added:
        log.info("trading DB: added columns %s", ", ".join(added))
    return added


def normalize_url(url: str) -> str:
    """``postgresql://`` → psycopg 3 driver; a bare path → SQLite file."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def build_trading_db(url: str, *, schema: str | None = None, reset: bool = False,
                     busy_timeout_ms: int = 10_000, pool_size: int = 10, max_overflow: int = 40,
                     idle_ping_s: float = IDLE_PING_S) -> TradingDB:
    """Engine + unit-of-work factory for the trading DB; creates the tables if missing.

    ``schema`` (PostgreSQL) puts every table in that schema (created if absent) — tests use it for
    isolation; ``reset`` drops and re-creates the tables first. ``idle_ping_s``: a pooled
    (non-SQLite) connection idle longer than this is pinged before use.
    """
    url = normalize_url(url)
    try:
        u = make_url(url)
    except Exception:  # SQLAlchemy's error names no setting: say which, URL redacted, cause not chained
        raise ValueError(f"trading_db: not a SQLAlchemy URL: {redact_url(url)!r}") from None
    kwargs: dict[str, Any] = {}
    if u.get_backend_name() == "sqlite":
        db = u.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow,
                      connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})
    else:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
    engine = create_engine(url, **kwargs)
    if u.get_backend_name() == "sqlite":
        _sqlite_pragmas(engine, busy_timeout_ms)
    else:
        _ping_when_idle(engine, idle_ping_s)
    if schema:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        engine = engine.execution_options(schema_translate_map={None: schema})
    tdb = TradingDB(engine=engine, url=url, schema=schema,
                    write_lock=threading.Lock() if u.get_backend_name() == "sqlite" else None)
    if reset:
        tdb.drop_all()
    tdb.create_all()
    log.info("trading DB ready: %s%s", redact_url(url),
             f" (schema {schema})" if schema else "")
    return tdb


def _ping_when_idle(engine: Engine, idle_s: float = IDLE_PING_S) -> None:
    """Ping a pooled connection at checkout if it was idle over ``idle_s`` (``pool_pre_ping`` pings at
    every checkout). A failed ping invalidates the pool; the pool connects anew (SQLAlchemy's
    documented checkout-listener recipe). A connection that dies while busy fails its statement,
    which invalidates the pool just the same."""
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["tg_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("tg_idle_since")
        if since is None or time.monotonic() - since <= idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise InvalidatePoolError(f"idle connection failed its ping: {exc}") from exc


def _sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.info.get("tg_begin", "BEGIN IMMEDIATE"))
