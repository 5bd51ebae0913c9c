"""The journal relay: business figures (``orders``, ``refunds``, ``payments``) from ``domain_events``.

Every figure comes from the trading DB's journal, never from a node's memory (which loses the
seconds it held on SIGKILL, and whose untagged points overwrote each other between nodes). One
relay at a time reads the journal in commit order after a durable cursor and:

1. publishes the batch to the event broker (``collectors/broker.py``; in-process by default) —
   if the broker does not confirm, the cycle stops and the cursor stays: nothing is lost;
2. adds it to the per-SKU read model in the trading DB (``domain/adapters/sku_sales.py``, exactly
   once through its own cursor committed with its rows);
3. **recomputes every second the batch touches from the journal** and writes the full per-second
   sums. A point is therefore always the whole sum of its (series, second) — never an increment —
   so writing it again (after a crash between the store write and the cursor save, or an event
   that commits late into an already written second) replaces it exactly and never counts twice;
4. saves the cursor in the control DB, fenced by the lease token.

Pitfalls designed against, each with a test (``tests/unit/collectors/test_relay.py``,
``tests/integration/collectors/test_relay_sql.py``):

- *late commits*: PostgreSQL assigns ids at INSERT, not COMMIT; the journal reader only reads below
  the oldest in-flight transaction (``pg_snapshot_xmin``; see ``domain/adapters/journal.py``);
- *re-emitted seconds*: whole-second recomputation (above), idempotent by construction;
- *two relays*: a lease row in the control DB with a fencing token that grows on every takeover.
  Before every metric write the relay renews its lease (compare-and-set on holder + token); a
  relay whose lease was taken over gets ``LeaseLost`` and stops before it writes. The cursor save
  and the read model (trading DB) check the token in the same statement/transaction, so a stale
  relay can never move them. (A relay paused longer than the TTL *between* its renewal and its
  metric write could still write once; what it writes is a full recomputed sum, at worst one
  cycle old, and the next relay's recomputation of that second overwrites it.)

Who runs it: the worker (``tradeguard.bootstrap.build_relay``), which already is the single leased
process for fleet-wide work (alert evaluation); nodes scale with traffic, get SIGKILLed, and would
all compete for one lease on the request hosts. The lease still makes two workers safe.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    MetaData,
    String,
    Table,
    and_,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from collectors.broker import EventBroker
from collectors.lease import Lease, LeaseLost, leases
from collectors.points import from_epoch_seconds, make_point
from collectors.query import MetricStore, Point
from common.clock import SystemClock
from common.redact import redact_text
from common.sql import create_tables, open_engine
from domain.adapters.journal import START, JournalRow, Position, SqlJournal
from domain.adapters.sku_sales import FencedOut, SkuSalesModel

log = logging.getLogger(__name__)

ORDER_EVENTS = ("OrderPlaced", "OrderPaid", "OrderCancelled")
REFUND_EVENTS = ("RefundRequested", "RefundCompleted")
PAYMENT_EVENTS = ("PaymentSucceeded", "PaymentFailed")
BUSINESS_EVENTS = ORDER_EVENTS + REFUND_EVENTS + PAYMENT_EVENTS
FLEET = "all"  # payments' instance tag when the event does not name its node



# ------------------------------------------------------------------ event → points


def _tag(value: Any) -> str:
    return str(value) if value else "unknown"


def second_of(at: datetime) -> int:
    return int(at.timestamp() // 1)


def business_points(rows: Iterable[JournalRow], *, app: str) -> list[Point]:
    """Full per-second sums of the business events in ``rows`` (the mapping the node aggregator had).

    - ``orders`` per (shop, channel, tx_type): placed, paid, cancelled; gmv (what buyers pay for
      placed sub-orders), paid_amount, discount in currency units; items (units placed);
    - ``refunds`` per shop: requested, completed, amount (completed, currency units);
    - ``payments`` per node (``instance`` from the event when it names one, else ``all``):
      success, failure, latency_ms (mean of that second).
    """
    orders: dict[tuple[int, str, str, str], list[int]] = defaultdict(lambda: [0] * 7)
    refunds: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    payments: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0, 0.0, 0])
    for r in rows:
        p = r.payload
        s = second_of(r.occurred_at)
        name = r.name
        if name in ORDER_EVENTS:
            o = orders[(s, _tag(p.get("shop_id")), _tag(p.get("channel")), _tag(p.get("tx_type")))]
            if name == "OrderPlaced":
                o[0] += 1
                o[3] += int(p.get("amount_cents", 0))
                o[5] += int(p.get("discount_cents", 0))
                o[6] += int(p.get("items", 0))
            elif name == "OrderPaid":
                # a presale pays twice (stage deposit, then balance): counted paid once, at the balance;
                # paid_amount sums both stages (each event carries its stage's share). COD: paid on delivery.
                if p.get("stage") != "deposit":
                    o[1] += 1
                o[4] += int(p.get("amount_cents", 0))
            else:
                o[2] += 1
        elif name in REFUND_EVENTS:
            f = refunds[(s, _tag(p.get("shop_id")))]
            if name == "RefundRequested":
                f[0] += 1
            else:
                f[1] += 1
                f[2] += int(p.get("amount_cents", 0))
        elif name in PAYMENT_EVENTS:
            node = p.get("instance") or p.get("node") or FLEET
            g = payments[(s, str(node))]
            g[0 if name == "PaymentSucceeded" else 1] += 1
            if p.get("latency_ms") is not None:
                g[2] += float(p["latency_ms"])
                g[3] += 1
    points: list[Point] = []
    for (s, shop, channel, tx_type), o in sorted(orders.items()):
        points.append(make_point(
            "orders",
            {"app": app, "shop": shop, "channel": channel, "tx_type": tx_type},
            {"placed": o[0], "paid": o[1], "cancelled": o[2], "gmv": o[3] / 100, "paid_amount": o[4] / 100,
             "discount": o[5] / 100, "items": o[6]},
            from_epoch_seconds(s),
        ))
    for (s, shop), f in sorted(refunds.items()):
        points.append(make_point(
            "refunds", {"app": app, "shop": shop},
            {"requested": f[0], "completed": f[1], "amount": f[2] / 100}, from_epoch_seconds(s),
        ))
    for (s, node), g in sorted(payments.items()):
        fields: dict[str, float] = {"success": g[0], "failure": g[1]}
        if g[3]:
            fields["latency_ms"] = g[2] / g[3]
        points.append(make_point("payments", {"app": app, "instance": node}, fields, from_epoch_seconds(s)))
    return points


def second_runs(seconds: Iterable[int], *, max_gap: int = 10) -> list[tuple[int, int]]:
    """Sorted seconds as ``[first, last]`` runs, merging runs closer than ``max_gap`` (one query each)."""
    runs: list[list[int]] = []
    for s in sorted(set(seconds)):
        if runs and s - runs[-1][1] <= max_gap:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return [(a, b) for a, b in runs]


def recompute_seconds(journal: SqlJournal, seconds: Iterable[int], *, app: str) -> list[Point]:
    """The points of these whole seconds, summed from the journal (every committed event in them)."""
    rows: list[JournalRow] = []
    for first, last in second_runs(seconds):
        rows += journal.read_window(
            from_epoch_seconds(first), from_epoch_seconds(last + 1), names=BUSINESS_EVENTS
        )
    return business_points(rows, app=app)


# ------------------------------------------------------------------ control DB: lease and cursor

control_metadata = MetaData()
relay_leases = leases  # the lease table (collectors/lease.py) holds the relay's lease, named "journal"

relay_cursors = Table(
    "relay_cursors", control_metadata,
    Column("name", String(64), primary_key=True),
    Column("txid", BigInteger, nullable=False, default=0),
    Column("event_id", BigInteger, nullable=False, default=0),
    Column("lag_s", Float),
    Column("cycle_at", Float),  # epoch seconds of the last completed cycle
    Column("holder", String(200)),
    Column("error", String(500)),
)


def control_engine(url: str) -> Engine:
    """The control DB's engine, opened like every other control-DB store (common/sql.py)."""
    return open_engine(url, what="control DB", field="control_db")


class RelayControl(Lease):
    """The relay's lease (:class:`collectors.lease.Lease`) and cursor in the control DB (any URL)."""

    def __init__(self, engine: Engine, *, name: str = "journal", holder: str | None = None,
                 ttl_s: float = 10.0, clock: Any = None) -> None:
        super().__init__(engine, name=name, holder=holder or f"relay-{uuid.uuid4().hex[:12]}",
                         ttl_s=ttl_s, clock=clock)
        create_tables(control_metadata, engine)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RelayControl:
        return cls(control_engine(url), **kwargs)

    def _on_acquire(self, conn: Any) -> None:
        c = relay_cursors
        if conn.execute(select(c.c.name).where(c.c.name == self.name)).first() is None:
            conn.execute(insert(c).values(name=self.name, txid=0, event_id=0))

    def cursor(self) -> Position:
        c = relay_cursors
        with self.engine.connect() as conn:
            row = conn.execute(select(c.c.txid, c.c.event_id).where(c.c.name == self.name)).first()
        return (int(row.txid), int(row.event_id)) if row else START

    def save(self, position: Position) -> None:
        """Move the cursor, only while this relay's token is the lease's; else :class:`LeaseLost`."""
        c = relay_cursors
        with self.engine.begin() as conn:
            done = conn.execute(
                update(c).where(and_(c.c.name == self.name, self.fenced()))
                .values(txid=position[0], event_id=position[1], holder=self.holder)
            ).rowcount
        if done != 1:
            self.token = None
            raise LeaseLost(f"relay {self.holder}: cursor not saved, the lease {self.name!r} was taken over")

    def record_cycle(self, *, lag_s: float | None, error: str | None = None) -> None:
        c = relay_cursors
        error = redact_text(error) if error else None
        with self.engine.begin() as conn:
            conn.execute(
                update(c).where(and_(c.c.name == self.name, self.fenced()))
                .values(lag_s=lag_s, cycle_at=self._now(), error=(error or None) and error[:500])
            )

    def status(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            lease = conn.execute(select(relay_leases).where(relay_leases.c.name == self.name)).first()
            cur = conn.execute(select(relay_cursors).where(relay_cursors.c.name == self.name)).first()
        now = self._now()
        return {
            "leader": lease.holder if lease and lease.expires_at > now else None,
            "token": int(lease.token) if lease else None,
            "cursor": int(cur.event_id) if cur else 0,
            "lag_s": cur.lag_s if cur else None,
            "last_cycle_age_s": (now - cur.cycle_at) if cur and cur.cycle_at else None,
            "error": cur.error if cur else None,
        }


RELAY_LAG_ALERT_S = 30.0  # the default alert's threshold (lag > 30 s for 1 min)
RELAY_STALE_S = 30.0  # no completed cycle for this long: the relay is not running


def relay_check(status: dict[str, Any], *, max_lag_s: float = RELAY_LAG_ALERT_S,
                stale_after_s: float = RELAY_STALE_S) -> dict[str, Any]:
    """A health entry from :meth:`RelayControl.status` (read from the control DB by any process).

    ``status``: ``absent`` (no relay ever ran: no worker in this fleet), ``stale`` (no leader or no
    cycle for ``stale_after_s``), ``lagging`` (lag over ``max_lag_s``), ``error`` (the last cycle
    stopped, e.g. a broker outage: the cursor waits), else ``ok``."""
    out = dict(status)
    age, lag = status.get("last_cycle_age_s"), status.get("lag_s")
    if age is None and status.get("leader") is None:
        out["status"] = "absent"
    elif status.get("leader") is None or age is None or age > stale_after_s:
        out["status"] = "stale"
    elif lag is not None and lag > max_lag_s:
        out["status"] = "lagging"
    elif status.get("error"):
        out["status"] = "error"
    else:
        out["status"] = "ok"
    out["relay_lag_s"] = lag
    out["relay_cursor"] = status.get("cursor")
    return out


# ------------------------------------------------------------------ the relay


@dataclass
class CycleResult:
    leader: bool = False
    events: int = 0
    points: int = 0
    published: int = 0
    read_model_rows: int = 0
    cursor: int = 0
    lag_s: float | None = None
    error: str | None = None
    batches: int = 0
    seconds: set[int] = field(default_factory=set)


class JournalRelay:
    """One relay. ``run_once()`` is the 1-second job; tests call it directly on a fake clock."""

    def __init__(
        self,
        journal: SqlJournal,
        store: MetricStore,
        control: RelayControl,
        *,
        app: str = "tradeguard",
        instance: str = "worker",
        clock: Any = None,
        broker: EventBroker | None = None,
        read_model: SkuSalesModel | None = None,
        batch_size: int = 2000,
        max_batches: int = 50,
        time_budget_s: float = 5.0,
    ) -> None:
        self.journal = journal
        self.store = store
        self.control = control
        self.app = app
        self.instance = instance
        self.clock = clock or SystemClock()
        self.broker = broker
        self.read_model = read_model
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.time_budget_s = time_budget_s
        self.last: CycleResult | None = None
        self.stopped = False

    def run_once(self) -> CycleResult:
        result = CycleResult()
        token = self.control.acquire()
        if token is None:
            self.last = result
            return result
        result.leader = True
        position = self.control.cursor()
        result.cursor = position[1]
        started = time.monotonic()
        try:
            while result.batches < self.max_batches and time.monotonic() - started < self.time_budget_s:
                rows = self.journal.read_after(position, self.batch_size)
                if not rows:
                    break
                self._relay_batch(rows, token, result)
                position = rows[-1].position
                result.cursor = position[1]
                result.batches += 1
                if len(rows) < self.batch_size:
                    break
        except (LeaseLost, FencedOut) as exc:
            result.error = str(exc)
            result.leader = False
            self.control.token = None
            log.warning("journal relay stopped: %s", exc)
            self.last = result
            return result
        except Exception as exc:
            result.error = redact_text(f"{type(exc).__name__}: {exc}")
            log.warning("journal relay cycle stopped at event %s (cursor kept, retried next cycle): %s",
                        result.cursor, result.error)
        result.lag_s = self._lag(position)
        self._write_relay_point(result)
        try:
            self.control.record_cycle(lag_s=result.lag_s, error=result.error)
        except Exception:
            log.exception("could not record the relay cycle in the control DB")
        self.last = result
        return result

    def _relay_batch(self, rows: Sequence[JournalRow], token: int, result: CycleResult) -> None:
        if self.broker is not None:
            self.broker.publish(rows)  # raises when not confirmed: the cursor stays
            result.published += len(rows)
        if self.read_model is not None:
            result.read_model_rows += self.read_model.apply(rows, fence=token)
        seconds = {second_of(r.occurred_at) for r in rows if r.name in BUSINESS_EVENTS}
        points = recompute_seconds(self.journal, seconds, app=self.app) if seconds else []
        if points:
            self.control.check()  # a relay whose lease was taken over stops here, before it writes
            self.store.write(points)
        self.control.save(rows[-1].position)
        result.events += len(rows)
        result.points += len(points)
        result.seconds |= seconds

    def _lag(self, position: Position) -> float:
        pending = self.journal.first_pending(position)
        if pending is None:
            return 0.0
        return max(0.0, (self.clock.now() - pending.occurred_at).total_seconds())

    def _write_relay_point(self, result: CycleResult) -> None:
        try:
            self.store.write([make_point(
                "relay", {"app": self.app, "instance": self.instance},
                {"relay_lag_s": float(result.lag_s or 0.0), "relay_cursor": float(result.cursor)},
                self.clock.now(),
            )])
        except Exception as exc:
            log.warning("relay metric not written: %s", exc)

    def replay(self, start: datetime, end: datetime) -> int:
        """Rebuild the business points of ``[start, end)`` (whole seconds) from the journal; idempotent."""
        first, last = second_of(start), second_of(end - timedelta(microseconds=1))
        written = 0
        step = 600
        for a in range(first, last + 1, step):
            b = min(a + step - 1, last)
            rows = self.journal.read_window(from_epoch_seconds(a), from_epoch_seconds(b + 1),
                                            names=BUSINESS_EVENTS)
            points = business_points(rows, app=self.app)
            if points:
                self.store.write(points)
                written += len(points)
        return written

    def health(self) -> dict[str, Any]:
        status = self.control.status()
        status["holder"] = self.control.holder
        status["leading"] = self.control.token is not None
        return status

    def close(self) -> None:
        try:
            self.control.release()
        except Exception:
            log.warning("could not release the relay lease", exc_info=True)
        if self.broker is not None:
            self.broker.close()
