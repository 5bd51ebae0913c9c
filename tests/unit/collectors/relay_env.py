"""A journal relay over a real trading DB (SQLite here; PostgreSQL in tests/integration) and an
embedded metric store, with the truth the relay's sums must equal, read straight from the DB."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import func, select

from collectors.broker import InProcessBroker
from collectors.query import Query
from collectors.registry import open_store
from collectors.relay import JournalRelay, RelayControl, control_engine
from domain.adapters import orm
from domain.adapters.journal import SqlJournal
from domain.adapters.sku_sales import SkuSalesModel
from domain.adapters.unit_of_work import TradingDB
from domain.model import Catalog, Product, Shop, StockLevel
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeClock, FakeGateway
from tests.unit.domain.helpers import order_cmd, small_catalog

ORDER_FIELDS = ("placed", "paid", "cancelled", "gmv", "paid_amount", "discount", "items")
DELIVERY_FIELDS = ("shipped", "delivered", "received", "auto_received", "failed", "cod_collected",
                   "cod_amount")


def crash_cursor_save_once(relay: JournalRelay) -> None:
    """The relay's first cursor save raises, as if the process were killed between the store write
    and the cursor save; later saves go through."""
    calls = {"n": 0}
    real_save = relay.control.save

    def crash_once(position):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed between the store write and the cursor save")
        real_save(position)

    relay.control.save = crash_once


def delivery_catalog() -> Catalog:
    """The small catalog plus a shop that accepts cash on delivery (``c1``, product ``C1``)."""
    base = small_catalog()
    return Catalog(
        shops=[*base.shops, Shop("c1", "Cash Shop", cod_max_order_cents=100_000, cod_max_qty_per_day=50)],
        products=[*base.products, Product("C1", "c1", "Rice", 1000)],
        stock=[*base.stock, StockLevel("C1", "default", 1000)],
        promotions=list(base.promotions),
    )


class RelayEnv:
    def __init__(self, db: TradingDB, tmp_path, *, seed: bool = True, catalog: Catalog | None = None) -> None:
        self.db = db
        self.tmp_path = tmp_path
        self.clock = FakeClock()
        self.gateway = FakeGateway()
        self.service = TradingService(db.uow_factory, self.gateway, publisher=CollectingPublisher(),
                                      clock=self.clock, sleep=lambda s: None)
        if seed:
            self.service.seed(catalog or small_catalog())
        self.store = open_store(f"sqlite:///{tmp_path / 'metrics.db'}", clock=self.clock)
        self.control_url = f"sqlite:///{tmp_path / 'control.db'}"
        self.control_db = control_engine(self.control_url)
        self.journal = SqlJournal(db.engine, schema=db.schema)
        self.journal.ensure_schema()
        self.broker = InProcessBroker()
        self.delivered: list = []
        self.broker.subscribe(self.delivered.append)
        self.n = 0

    def relay(self, holder: str = "r1", **kw) -> JournalRelay:
        control = RelayControl(self.control_db, holder=holder, ttl_s=kw.pop("ttl_s", 10.0), clock=self.clock)
        return JournalRelay(self.journal, kw.pop("store", self.store), control, app="tg", instance=holder,
                            clock=self.clock, broker=kw.pop("broker", self.broker),
                            read_model=SkuSalesModel(self.db.engine), **kw)

    # ------------------------------------------------------------ business
    def place(self, lines=(("A1", 1),), *, pay: bool = False, channel: str = "app",
              tx_type: str = "fixed_price") -> str:
        self.n += 1
        view = self.service.place_order(order_cmd(list(lines), buyer=f"u{self.n}", key=f"k{self.n}",
                                                  channel=channel, tx_type=tx_type))
        if pay:
            self.service.pay_order(view.id)
        return view.id

    def refund(self, order_id: str, sku: str, qty: int = 1) -> None:
        r = self.service.request_refund(order_id, [(sku, qty)])
        self.service.complete_refund(r.id)

    def sub_orders(self, order_id: str) -> list[str]:
        return [s.id for s in self.service.get_order(order_id).sub_orders]

    # ------------------------------------------------------------ truth and what the store says
    def delivery_truth(self) -> dict[str, float]:
        """The delivery figures straight from the trading DB's sub-orders and payments (not the journal)."""
        s, p = orm.sub_orders, orm.payments
        with self.db.engine.connect() as conn:
            def count(*where) -> float:
                return float(conn.execute(select(func.count()).select_from(s).where(*where)).scalar_one())

            cod = conn.execute(select(func.count(), func.coalesce(func.sum(p.c.amount_cents), 0))
                               .where(p.c.reference.like("cod:%"), p.c.status == "succeeded")).one()
            return {
                "shipped": count(s.c.shipped_at.is_not(None)),
                "delivered": count(s.c.delivered_at.is_not(None)),
                "received": count(s.c.received_at.is_not(None)),
                "failed": count(s.c.delivery_status == "failed"),
                "cod_collected": float(cod[0]),
                "cod_amount": float(cod[1]),
            }

    def delivery_sums(self, start: datetime | None = None, end: datetime | None = None,
                      group_by: tuple[str, ...] = ()) -> dict:
        """``deliveries`` summed over the range (cod_amount back in cents); grouped: per tag tuple."""
        start = start or self.clock.now() - timedelta(days=30)
        end = end or self.clock.now() + timedelta(days=1)
        out: dict = {}
        for r in self.store.query(Query("deliveries", DELIVERY_FIELDS, start, end, aggregate="sum",
                                        group_by=group_by)):
            key = tuple(r.tags[t] for t in group_by)
            acc = out.setdefault(key, Counter())
            for k, v in r.values.items():
                acc[k] += v or 0
        for acc in out.values():
            acc["cod_amount"] = round(acc["cod_amount"] * 100)
        if not group_by:
            return {k: float(v) for k, v in out.get((), Counter()).items()}
        return {key: {k: float(v) for k, v in acc.items()} for key, acc in out.items()}

    def assert_deliveries_equal(self) -> None:
        truth, got = self.delivery_truth(), self.delivery_sums()
        for key, want in truth.items():
            assert got.get(key, 0.0) == want, (key, got, truth)

    def truth(self) -> dict[str, float]:
        """Sums over the journal rows in the trading DB (the books), and sub-orders as a cross-check."""
        t = orm.domain_events
        out: Counter[str] = Counter()
        with self.db.engine.connect() as conn:
            for name, payload in conn.execute(select(t.c.name, t.c.payload)):
                p = json.loads(payload)
                if name == "OrderPlaced":
                    out["placed"] += 1
                    out["gmv"] += p["amount_cents"]
                    out["items"] += p["items"]
                elif name == "OrderPaid":
                    out["paid"] += 1
                    out["paid_amount"] += p["amount_cents"]
                elif name == "OrderCancelled":
                    out["cancelled"] += 1
                elif name == "RefundCompleted":
                    out["completed"] += 1
                    out["amount"] += p["amount_cents"]
                elif name == "RefundRequested":
                    out["requested"] += 1
                elif name in ("PaymentSucceeded", "PaymentFailed"):
                    out["payments"] += 1
            out["sub_orders"] = conn.execute(select(func.count()).select_from(orm.sub_orders)).scalar_one()
        return {k: float(v) for k, v in out.items()}

    def sums(self, start: datetime | None = None, end: datetime | None = None) -> dict[str, float]:
        start = start or self.clock.now() - timedelta(days=30)
        end = end or self.clock.now() + timedelta(days=1)
        out: Counter[str] = Counter()
        for r in self.store.query(Query("orders", ORDER_FIELDS, start, end, aggregate="sum")):
            for k, v in r.values.items():
                out[k] += v or 0
        for r in self.store.query(Query("refunds", ("requested", "completed", "amount"), start, end)):
            for k, v in r.values.items():
                out[k] += v or 0
        for r in self.store.query(Query("payments", ("success", "failure"), start, end)):
            out["payments"] += (r.values["success"] or 0) + (r.values["failure"] or 0)
        out["gmv"] = round(out["gmv"] * 100)
        out["paid_amount"] = round(out["paid_amount"] * 100)
        out["amount"] = round(out["amount"] * 100)
        return {k: float(v) for k, v in out.items()}

    def assert_equal(self, *, journal_only: bool = False) -> None:
        truth, got = self.truth(), self.sums()
        if not journal_only:  # tests that write journal rows by hand have no sub-order for them
            assert truth["placed"] == truth["sub_orders"]
        for key in ("placed", "paid", "cancelled", "gmv", "paid_amount", "items", "completed", "amount",
                    "requested", "payments"):
            assert got.get(key, 0.0) == truth.get(key, 0.0), (key, got, truth)
