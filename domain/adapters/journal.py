"""Reading the trading DB's event journal (``domain_events``) in commit order.

The journal relay (``collectors/relay.py``) reads with a *position* ``(txid, id)`` and needs every
committed row exactly once. An ``id > cursor`` reader is not enough on PostgreSQL: a sequence value
is taken at INSERT, not at COMMIT, so transaction A can take id 10, transaction B id 11, B commits,
the reader sees 11 and moves its cursor past 10 — then A commits and row 10 is never read.

Choice: a *safe horizon* instead of re-scanning gaps. Every row stores the writing transaction's id
(``txid``, a server default ``pg_current_xact_id()``), and the reader only takes rows whose
``txid`` is below ``pg_snapshot_xmin(pg_current_snapshot())`` — the oldest transaction still in
flight. Every transaction below that horizon has ended (committed or rolled back) and is visible to
the reading statement, so ordering by ``(txid, id)`` and reading strictly after the last position
can never skip a row that shows up later: a late-committing transaction has a txid at or above the
horizon, hence above any position already passed. Gap re-scanning was rejected because a sequence
also has permanent gaps (rolled-back inserts, cached values), so it must guess how long to wait and
still loses a transaction slower than the guess; the horizon is exact. Its price: one long writing
transaction anywhere in the cluster holds the horizon (the relay lags, it never loses) — which is
what the ``relay_lag_s`` metric and the ``RelayLagHigh`` alert are for.

SQLite has one writer at a time and ids are assigned inside the write lock, so ids are already in
commit order: ``txid`` is 0 and the horizon is "everything".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, inspect, select, text, tuple_

from domain.adapters import orm

Position = tuple[int, int]  # (txid, id): the order the journal is read in
START: Position = (0, 0)


@dataclass(frozen=True)
class JournalRow:
    id: int
    txid: int
    name: str
    occurred_at: datetime
    order_id: str | None
    payload: dict[str, Any]

    @property
    def position(self) -> Position:
        return (self.txid, self.id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "occurred_at": self.occurred_at.isoformat(),
            "order_id": self.order_id,
            "payload": self.payload,
        }


def _row(r: Any) -> JournalRow:
    return JournalRow(
        id=int(r.id),
        txid=int(r.txid),
        name=r.name,
        occurred_at=r.occurred_at,
        order_id=r.order_id,
        payload=json.loads(r.payload),
    )


_T = orm.domain_events
_COLUMNS = (_T.c.id, _T.c.txid, _T.c.name, _T.c.occurred_at, _T.c.order_id, _T.c.payload)


class SqlJournal:
    """Reads ``domain_events`` of one trading DB engine (``TradingDB.engine``)."""

    def __init__(self, engine: Engine, *, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema
        self.postgres = engine.dialect.name == "postgresql"

    # ------------------------------------------------------------ schema

    def ensure_schema(self) -> None:
        """Bring a journal created before the relay up to date (``txid`` column and its indexes)."""
        with self.engine.begin() as conn:
            cols = {c["name"] for c in inspect(conn).get_columns("domain_events", schema=self.schema)}
            table = f'"{self.schema}".domain_events' if self.schema else "domain_events"
            if "txid" not in cols:
                # old rows get 0: they sort before every new row, which is where they belong
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN txid BIGINT NOT NULL DEFAULT 0"))
                if self.postgres:
                    default = "(pg_current_xact_id()::text::bigint)"
                    conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN txid SET DEFAULT {default}"))
            existing = {i["name"] for i in inspect(conn).get_indexes("domain_events", schema=self.schema)}
            for index in _T.indexes:
                if index.name not in existing:
                    index.create(conn)

    # ------------------------------------------------------------ reading

    def _horizon_filter(self, stmt: Any) -> Any:
        if self.postgres:
            horizon = select(
                text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            ).scalar_subquery()
            stmt = stmt.where(_T.c.txid < horizon)
        return stmt

    def read_after(self, position: Position, limit: int = 1000) -> list[JournalRow]:
        """Up to ``limit`` committed rows after ``position``, in commit order, below the safe horizon."""
        if self.postgres:
            stmt = select(*_COLUMNS).where(tuple_(_T.c.txid, _T.c.id) > tuple_(*position))
            stmt = self._horizon_filter(stmt).order_by(_T.c.txid, _T.c.id).limit(limit)
        else:
            stmt = select(*_COLUMNS).where(_T.c.id > position[1]).order_by(_T.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(stmt)]

    def first_pending(self, position: Position) -> JournalRow | None:
        """The oldest committed row not yet read (horizon ignored): what the relay's lag is measured on."""
        if self.postgres:
            stmt = select(*_COLUMNS).where(tuple_(_T.c.txid, _T.c.id) > tuple_(*position))
            stmt = stmt.order_by(_T.c.txid, _T.c.id).limit(1)
        else:
            stmt = select(*_COLUMNS).where(_T.c.id > position[1]).order_by(_T.c.id).limit(1)
        with self.engine.connect() as conn:
            rows = [_row(r) for r in conn.execute(stmt)]
        return rows[0] if rows else None

    def read_window(
        self, start: datetime, end: datetime, names: Iterable[str] | None = None
    ) -> list[JournalRow]:
        """Every committed row with ``start <= occurred_at < end`` (optionally of these event names)."""
        stmt = select(*_COLUMNS).where(_T.c.occurred_at >= start, _T.c.occurred_at < end)
        if names is not None:
            stmt = stmt.where(_T.c.name.in_(list(names)))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(stmt.order_by(_T.c.id))]

    def tail(
        self,
        after_id: int = 0,
        *,
        name: str | None = None,
        order_id: str | None = None,
        limit: int = 1000,
        last: int | None = None,
    ) -> list[JournalRow]:
        """Rows by id for ``tradeguard events tail``; ``last=N`` gives the newest N (still ascending)."""
        stmt = select(*_COLUMNS).where(_T.c.id > after_id)
        if name:
            stmt = stmt.where(_T.c.name == name)
        if order_id:
            stmt = stmt.where(_T.c.order_id == order_id)
        if last is not None:
            stmt = stmt.order_by(_T.c.id.desc()).limit(last)
        else:
            stmt = stmt.order_by(_T.c.id).limit(limit)
        with self.engine.connect() as conn:
            rows = [_row(r) for r in conn.execute(stmt)]
        return sorted(rows, key=lambda r: r.id)

    def count(self, names: Sequence[str] | None = None) -> int:
        stmt = select(func.count()).select_from(_T)
        if names is not None:
            stmt = stmt.where(_T.c.name.in_(list(names)))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())
