"""SQLAlchemy engine for the control DB (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


class ControlDBError(ValueError):
    """The control DB URL is unusable; the message says what was expected."""


def make_engine(url: str) -> Engine:
    try:
        u = make_url(url)
    except Exception as exc:
        raise ControlDBError(
            f"control DB URL {url!r} is not a SQLAlchemy URL (expected sqlite:///path or "
            "postgresql+psycopg://user@host:port/db)"
        ) from exc
    backend = u.get_backend_name()
    if backend == "sqlite":
        db = u.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        return create_engine(u, pool_pre_ping=True, pool_size=2, max_overflow=2)
    raise ControlDBError(
        f"control DB URL {url!r}: unsupported backend {backend!r}; allowed: sqlite, postgresql"
    )


def as_utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
