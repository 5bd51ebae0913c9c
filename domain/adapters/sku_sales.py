"""Per-product figures: units, revenue and refunds per SKU, shop and hour (``sku_sales_hourly``).

Why a read model in the trading DB and not a ``sku`` tag on a measurement: a shop may list 100,000
SKUs, so a tag would make up to 100,000 series per shop (times channels and tx types) in the metric
store — the cardinality that makes InfluxDB's index and the embedded store's wide tables blow up,
while the merchant pages only ask "top N SKUs of my shop in this period", which is one indexed
range scan of a table keyed (shop, sku, hour).

Exactly once: the journal relay's main cursor lives in the control DB, which cannot commit together
with these rows. So the model keeps its *own* cursor (``read_model_cursors``) in the trading DB and
moves it in the same transaction as the row updates: a relay killed mid-batch either committed the
rows and the cursor or neither, and a re-read batch skips what is at or before the model's cursor.
This makes updates incremental (``+= delta`` per batch, O(batch) — recomputing whole shop-hours
from the journal on every batch would re-read up to millions of events an hour in a flash sale).
The cursor row also carries the relay's fencing token: a relay whose lease was taken over (an
older token) is refused, so a stale relay can never add a batch twice.

Figures: ``units`` / ``revenue_cents`` from the lines of *paid* sub-orders (``OrderPaid``);
``refunded_units`` / ``refunded_cents`` from the lines of completed refunds (``RefundCompleted``),
each in the hour of its event (UTC).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from domain.adapters import orm
from domain.adapters.journal import START, JournalRow, Position

MODEL = "sku_sales_hourly"
SORT_KEYS = ("revenue", "units", "refunds")


class FencedOut(RuntimeError):
    """A relay with a newer fencing token already wrote this read model: this relay must stop."""


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


class SkuSalesModel:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    def position(self) -> Position:
        c = orm.read_model_cursors
        with self.engine.connect() as conn:
            row = conn.execute(select(c.c.txid, c.c.event_id).where(c.c.name == MODEL)).first()
        return (int(row.txid), int(row.event_id)) if row else START

    def _cursor_for_update(self, conn: Connection) -> tuple[Position, int]:
        c = orm.read_model_cursors
        stmt = select(c.c.txid, c.c.event_id, c.c.fence).where(c.c.name == MODEL)
        if self.postgres:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        if row is None:
            ins = (postgresql.insert(c) if self.postgres else sqlite.insert(c)).values(
                name=MODEL, txid=0, event_id=0, fence=0
            ).on_conflict_do_nothing(index_elements=["name"])
            conn.execute(ins)
            row = conn.execute(stmt).first()
        return (int(row.txid), int(row.event_id)), int(row.fence)

    def apply(self, rows: Sequence[JournalRow], *, fence: int) -> int:
        """Add the rows after the model's cursor, move the cursor to the last row; one transaction.

        Returns the number of rows applied (0 when all were applied before). Raises
        :class:`FencedOut` if a relay with a newer token has written.
        """
        if not rows:
            return 0
        with self.engine.begin() as conn:
            at, stored_fence = self._cursor_for_update(conn)
            if stored_fence > fence:
                raise FencedOut(
                    f"read model {MODEL} was written by fencing token {stored_fence}; "
                    f"this relay holds {fence}"
                )
            pending = [r for r in rows if r.position > at]
            if pending:
                self._add(conn, pending)
            c = orm.read_model_cursors
            last = max(rows[-1].position, at)
            conn.execute(
                update(c)
                .where(c.c.name == MODEL)
                .values(txid=last[0], event_id=last[1], fence=fence)
            )
            return len(pending)

    def _add(self, conn: Connection, rows: Sequence[JournalRow]) -> None:
        paid: dict[str, datetime] = {}
        refunds: dict[tuple[str, str], datetime] = {}
        for r in rows:
            if r.name == "OrderPaid" and r.payload.get("stage") != "deposit":  # a presale counts once paid
                paid[r.payload["sub_order_id"]] = hour_of(r.occurred_at)
            elif r.name == "RefundCompleted":
                refunds[(r.payload["refund_id"], r.payload["sub_order_id"])] = hour_of(r.occurred_at)
        deltas: dict[tuple[str, str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        if paid:
            ol = orm.order_lines
            ids = list(paid)
            for i in range(0, len(ids), 500):
                q = select(ol.c.sub_order_id, ol.c.shop_id, ol.c.sku, ol.c.qty, ol.c.amount_cents).where(
                    ol.c.sub_order_id.in_(ids[i : i + 500])
                )
                for line in conn.execute(q):
                    d = deltas[(line.shop_id, line.sku, paid[line.sub_order_id])]
                    d[0] += int(line.qty)
                    d[1] += int(line.amount_cents)
        if refunds:
            rl = orm.refund_lines
            refund_ids = sorted({k[0] for k in refunds})
            for i in range(0, len(refund_ids), 500):
                q = select(rl.c.refund_id, rl.c.sub_order_id, rl.c.shop_id, rl.c.sku, rl.c.qty,
                           rl.c.amount_cents).where(rl.c.refund_id.in_(refund_ids[i : i + 500]))
                for line in conn.execute(q):
                    period = refunds.get((line.refund_id, line.sub_order_id))
                    if period is None:
                        continue
                    d = deltas[(line.shop_id, line.sku, period)]
                    d[2] += int(line.qty)
                    d[3] += int(line.amount_cents)
        if not deltas:
            return
        t = orm.sku_sales_hourly
        values = [
            {"shop_id": k[0], "sku": k[1], "period": k[2], "units": v[0], "revenue_cents": v[1],
             "refunded_units": v[2], "refunded_cents": v[3]}
            for k, v in sorted(deltas.items())
        ]
        ins = postgresql.insert(t) if self.postgres else sqlite.insert(t)
        stmt = ins.on_conflict_do_update(
            index_elements=["shop_id", "sku", "period"],
            set_={
                "units": t.c.units + ins.excluded.units,
                "revenue_cents": t.c.revenue_cents + ins.excluded.revenue_cents,
                "refunded_units": t.c.refunded_units + ins.excluded.refunded_units,
                "refunded_cents": t.c.refunded_cents + ins.excluded.refunded_cents,
            },
        )
        conn.execute(stmt, values)

    def top(
        self, shop_id: str, start: datetime, end: datetime, *, by: str = "revenue", limit: int = 10
    ) -> list[dict[str, Any]]:
        """The ``limit`` best SKUs of ``shop_id`` over the hours in ``[start, end)``, for merchant pages.

        ``by``: ``revenue`` (revenue_cents), ``units`` or ``refunds`` (refunded_cents).
        """
        if by not in SORT_KEYS:
            raise ValueError(f"by must be one of {', '.join(SORT_KEYS)}, got {by!r}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        t = orm.sku_sales_hourly
        units = func.sum(t.c.units).label("units")
        revenue = func.sum(t.c.revenue_cents).label("revenue_cents")
        r_units = func.sum(t.c.refunded_units).label("refunded_units")
        r_cents = func.sum(t.c.refunded_cents).label("refunded_cents")
        key = {"revenue": revenue, "units": units, "refunds": r_cents}[by]
        stmt = (
            select(t.c.sku, units, revenue, r_units, r_cents)
            .where(and_(t.c.shop_id == shop_id, t.c.period >= hour_of(start), t.c.period < end))
            .group_by(t.c.sku)
            .order_by(key.desc(), t.c.sku)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                {"sku": r.sku, "units": int(r.units), "revenue_cents": int(r.revenue_cents),
                 "refunded_units": int(r.refunded_units), "refunded_cents": int(r.refunded_cents)}
                for r in conn.execute(stmt)
            ]

    def rows(self) -> list[dict[str, Any]]:
        t = orm.sku_sales_hourly
        with self.engine.connect() as conn:
            stmt = select(t).order_by(t.c.shop_id, t.c.sku, t.c.period)
            return [dict(r._mapping) for r in conn.execute(stmt)]
