"""One way to open a control-DB-style SQLAlchemy engine, and one aware-UTC column type.

Every store of the control DB (rules, fleet, alerts, accounts, chaos, API keys, relay lease) and the
trading DB's tables use these, so SQLite gets the same pragmas everywhere (several processes share
one file: WAL, a busy timeout) and PostgreSQL the same driver and pool settings.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from common.redact import redact_url

log = logging.getLogger(__name__)


class DatabaseUrlError(ValueError):
    """A database URL is unusable; the message names the database, the URL (redacted) and what is
    expected."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def open_engine(url: str, *, what: str = "control DB", field: str = "control_db", pool_size: int = 2,
                max_overflow: int = 2, busy_timeout_s: float = 30.0) -> Engine:
    """An engine for ``url``: SQLite (parent directory created; WAL, busy timeout, foreign keys) or
    PostgreSQL (psycopg 3, pre-ping). Anything else raises ``DatabaseUrlError`` naming ``what``."""
    try:
        u = make_url(url)
    except Exception as exc:
        raise DatabaseUrlError(
            f"{what} URL {redact_url(url)!r} is not a SQLAlchemy URL "
            "(expected sqlite:///path or postgresql+psycopg://user@host:port/db)",
            field=field,
        ) from None if isinstance(exc, ValueError) else exc
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})
        busy_ms = int(busy_timeout_s * 1000)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        return sa.create_engine(u, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)
    raise DatabaseUrlError(
        f"{what} URL {redact_url(url)!r}: unsupported backend {backend!r}; allowed: sqlite, postgresql",
        field=field,
    )


def as_utc(dt: datetime | None) -> datetime | None:
    """``dt`` as an aware UTC datetime (a naive one is taken as UTC); None stays None."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in and out (SQLite forgets the zone). ``strict``: a naive datetime is a
    bug (the trading DB), not something to take as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def __init__(self, *args: Any, strict: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strict = strict

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            if self.strict:
                raise ValueError("naive datetime given to the database; use aware UTC")
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


def create_tables(metadata: sa.MetaData, bind: Engine | sa.Connection) -> None:
    """``metadata.create_all`` safe when several processes start at once on a fresh database.

    PostgreSQL's ``CREATE TABLE`` races on its catalog (two workers starting together both see no
    table and one fails with a duplicate ``pg_type`` key), so the creation runs under a transaction-
    level advisory lock there; SQLite serializes writers by itself."""
    if isinstance(bind, sa.Connection):
        _create_locked(metadata, bind)
        return
    with bind.begin() as conn:
        _create_locked(metadata, conn)


_SCHEMA_LOCK = 0x7467_5343  # "tgSC": one advisory lock id for every tradeguard schema change


def _create_locked(metadata: sa.MetaData, conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        metadata.create_all(conn, checkfirst=True)
        return
    # SQLite: pysqlite opens no transaction before a DDL statement, so another process can create a
    # table between the check and the CREATE (seen in CI: a worker and two nodes starting at once);
    # the loser gets "already exists" and checks again. Each retry finds at least one more table made.
    attempts = sum(1 + len(t.indexes) for t in metadata.tables.values()) + 1
    for attempt in range(attempts):
        try:
            metadata.create_all(conn, checkfirst=True)
            return
        except sa.exc.OperationalError as exc:
            if "already exists" not in str(exc.orig) or attempt == attempts - 1:
                raise
            log.info("schema: %s was created by another process meanwhile; checking again", exc.orig)
