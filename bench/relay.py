"""``tradeguard bench relay``: the journal relay's throughput and lag, with and without RabbitMQ.

1. **events_per_s_sqlite / events_per_s_postgres**: ``--events`` business events (the mix of a
   placed-and-paid sub-order: OrderPlaced, OrderPaid, PaymentSucceeded, StockReserved) are
   written to the journal in bulk; one relay (in-process broker, per-SKU read model on) then
   turns them all into points in the embedded metric store; events/s = events / wall time.
   **Baseline** in the same run: reading the same journal through the same reader with no work
   (``read_only_events_per_s_*``): what the relay costs on top of the scan.
2. **Real orders** (``*_tradingservice``): orders are placed (4 in 5 also paid) through
   ``TradingService`` on the trading DB directly — the unit of work and transaction a node's
   ``POST /orders`` runs after HTTP — by ``--procs`` processes × ``--threads`` placers, paced to
   ``--rate`` orders/s together (a ceiling), for ``--duration`` s on PostgreSQL (SQLite when
   PostgreSQL is absent) while the relay runs on its 1-second schedule. ``orders_per_s_tradingservice``
   is the rate achieved, ``placer_cpu_ms_per_order`` the placers' own CPU per order (all their
   threads; the database server's is on top): ``--rate`` × that is the cores the placers alone need.
3. **lag_p50_s / lag_p99_s at the target rate**: when the placers reach ``--rate`` (95 %), step 2
   is that run (``lag_orders_source`` ``"tradingservice"``). Otherwise — a fleet places orders on
   many machines, this bench has two cores — **journal writer** processes emulate the fleet's
   writes at ``--rate`` (``lag_orders_source`` ``"journal_writer"``): per order the placement's
   transaction (stock reservation, the order, sub-order and line rows, its OrderPlaced and
   StockReserved journal rows) and, for 4 in 5, the payment's (the sale, order and sub-order paid,
   the payment row, PaymentSucceeded and OrderPaid), rows and events built by the trading core's
   own model and row builders, one transaction per placement and per payment as a node commits
   them, ``--writer-procs`` × ``--writer-threads`` in flight; each transaction's statements go in
   one round trip (psycopg pipeline mode; on SQLite the trading core's own units of work). Left out is what
   stays on the nodes: catalog reads, pricing, guards, limit counters and the pending-payment
   transaction (it writes no journal row). ``lag_orders_per_s`` is the rate achieved in that run.
   The lag of an event is the end of the relay cycle that relayed it minus its ``occurred_at``.
4. **broker**: the lag run at the target rate again with the RabbitMQ adapter on
   (``lag_p99_s_broker``), and ``broker_events_per_s``: the throughput of step 1 on SQLite with
   RabbitMQ confirms; a queue bound to the run's routing keys collects every message:
   ``broker_lost`` = journal ids never delivered (duplicates by message id are dropped, as a
   consumer would).
5. **missing / double_counted**: after every lag run, the store's sums (placed, paid, cancelled,
   gmv in cents, payments) against the journal in the trading DB: how much the store lacks, and
   how much it has too much (summed over the runs).

``relay_cpu_us_per_event_*``: the relay process's CPU time (all its threads) per event in the
throughput runs — less sensitive than the wall-clock rates to other work on a shared machine.

Everything runs in a temp dir (and a temp PostgreSQL schema, dropped after); bounded to about
2 minutes with the defaults. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, text, update

from collectors.broker import InProcessBroker, RabbitMQBroker
from collectors.query import Query
from collectors.registry import open_store
from collectors.relay import JournalRelay, RelayControl, control_engine
from domain.adapters import orm
from domain.adapters.journal import SqlJournal
from domain.adapters.repository import new_order_rows, payment_row
from domain.adapters.sku_sales import SkuSalesModel
from domain.adapters.unit_of_work import build_trading_db, event_row
from domain.commands import LineItem, PlaceOrder
from domain.model import (
    DEFAULT_POOL,
    PENDING,
    Address,
    Catalog,
    Order,
    OrderLine,
    Payment,
    Product,
    Shop,
    StockLevel,
    SubOrder,
)
from domain.services import TradingService

PG_URL = os.environ.get("TRADEGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("TRADEGUARD_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
ADDRESS = {"country": "CN", "province": "Zhejiang", "city": "Hangzhou", "district": "Xihu",
           "street": "1 Wensan Rd", "recipient": "Bench", "phone": "+86 138 0000 0000"}
COUNTED = ("placed", "paid", "cancelled", "gmv", "payments")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=20_000, help="journal events for the throughput runs")
    parser.add_argument("--rate", type=float, default=500.0, help="orders/s placed during the lag runs")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each lag run")
    parser.add_argument("--procs", type=int, default=4, help="order-placing processes during the lag runs")
    parser.add_argument("--threads", type=int, default=4, help="order placers (threads) per process")
    parser.add_argument("--writer-procs", type=int, default=2, help="journal writer processes (step 3)")
    parser.add_argument("--writer-threads", type=int, default=12,
                        help="transactions each journal writer process keeps in flight (step 3)")
    parser.add_argument("--postgres-url", default=PG_URL)
    parser.add_argument("--amqp-url", default=AMQP_URL)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False



def _catalog() -> Catalog:
    shops = [Shop(f"s{i}", f"Shop {i}") for i in range(4)]
    products = [Product(f"P{i}", f"s{i % 4}", f"Item {i}", 500 + 100 * i) for i in range(40)]
    stock = [StockLevel(p.sku, "default", 10_000_000) for p in products]
    return Catalog(shops=shops, products=products, stock=stock)


def _service(db) -> TradingService:
    from domain.adapters.payment_sim import SimulatedGateway

    service = TradingService(db.uow_factory, SimulatedGateway(latency_ms=0.0, jitter=0.0),
                             sleep=lambda s: None)
    service.seed(_catalog())
    return service


def _db_url(kind: str, url: str | None, workdir: Path, tag: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'trading-{tag}.db'}", None
    return url or PG_URL, f"tg_bench_relay_{os.getpid()}_{tag}".replace("-", "_")


def _open_db(kind: str, url: str | None, workdir: Path, tag: str):
    url, schema = _db_url(kind, url, workdir, tag)
    return build_trading_db(url, schema=schema, reset=schema is not None), schema


def _drop(db, schema: str | None) -> None:
    if schema:
        with db.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    db.dispose()


def _relay(db, schema, workdir: Path, tag: str, broker, app: str, batch: int = 2000) -> JournalRelay:
    journal = SqlJournal(db.engine, schema=schema)
    journal.ensure_schema()
    store = open_store(f"sqlite:///{workdir / f'metrics-{tag}.db'}")
    control = RelayControl(control_engine(f"sqlite:///{workdir / f'control-{tag}.db'}"),
                           holder=f"bench-{tag}")
    return JournalRelay(journal, store, control, app=app, instance="bench", broker=broker,
                        read_model=SkuSalesModel(db.engine), batch_size=batch, max_batches=10_000,
                        time_budget_s=600)


def _fill_journal(db, n: int) -> None:
    t0 = datetime.now(UTC) - timedelta(seconds=n / 5000)
    rows = []
    for i in range(n):
        k, at = i // 4, t0 + timedelta(microseconds=200 * i)
        common = {"order_id": f"o{k}", "shop_id": f"s{k % 4}", "buyer_id": f"b{k}", "tx_type": "fixed_price",
                  "channel": "web" if k % 2 else "app", "occurred_at": at.isoformat()}
        kind = i % 4
        if kind == 0:
            name, p = "OrderPlaced", {**common, "sub_order_id": f"so{k}", "gross_cents": 1200,
                                      "discount_cents": 200, "amount_cents": 1000, "items": 2}
        elif kind == 1:
            name, p = "StockReserved", {**common, "sku": f"P{k % 40}", "qty": 2}
        elif kind == 2:
            name, p = "PaymentSucceeded", {**common, "payment_id": f"p{k}", "amount_cents": 1000,
                                           "latency_ms": 15.0}
        else:
            name, p = "OrderPaid", {**common, "sub_order_id": f"so{k}", "amount_cents": 1000,
                                    "payment_id": f"p{k}"}
        rows.append({"occurred_at": at, "name": name, "order_id": f"o{k}", "payload": json.dumps(p)})
    with db.engine.begin() as conn:
        for i in range(0, n, 5000):
            conn.execute(insert(orm.domain_events), rows[i : i + 5000])


def _throughput(kind: str, args, workdir: Path, *, broker=None, app: str = "bench") -> dict[str, float]:
    tag = f"tp-{kind}-{'mq' if broker is not None else 'ip'}"
    db, schema = _open_db(kind, args.postgres_url, workdir, tag)
    try:
        _fill_journal(db, args.events)
        journal = SqlJournal(db.engine, schema=schema)
        journal.ensure_schema()
        t = time.perf_counter()
        pos, read = (0, 0), 0
        while rows := journal.read_after(pos, 2000):
            pos, read = rows[-1].position, read + len(rows)
        baseline = read / (time.perf_counter() - t)
        relay = _relay(db, schema, workdir, tag, broker if broker is not None else InProcessBroker(), app)
        t, cpu = time.perf_counter(), time.process_time()
        out = relay.run_once()
        elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
        assert out.error is None and out.events == args.events, out
        relay.close()
        return {"events_per_s": out.events / elapsed, "read_only_events_per_s": baseline,
                "cpu_us_per_event": cpu / out.events * 1e6}
    finally:
        _drop(db, schema)


def _pace(rate: float, stop_at: float, one: Any, counts: Counter[str], lock: threading.Lock) -> None:
    """Call ``one(i)`` at ``rate`` per second until ``stop_at`` (a ceiling: behind, no burst to catch up)."""
    i = 0
    next_at = time.monotonic()
    while time.monotonic() < stop_at:
        i += 1
        try:
            one(i)
            with lock:
                counts["orders"] += 1
        except Exception as exc:  # a transient store error is the service's to retry; count the rest
            with lock:
                counts[f"error:{type(exc).__name__}"] += 1
        next_at += 1.0 / rate
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()


def _run_paced(threads: int, rate: float, duration: float, ready: Any, go: Any, one: Any) -> Counter[str]:
    """A load process's run: tell the parent it is ready, wait for the common start, then ``threads``
    threads each calling ``one(n, i)`` at ``rate / threads`` per second for ``duration`` seconds.
    Returns the orders and errors counted, and the process's CPU time (``cpu_us``)."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    ready.set()
    go.wait(60)
    stop_at = time.monotonic() + duration
    cpu = time.process_time()

    def thread(n: int) -> None:
        _pace(rate / threads, stop_at, lambda i: one(n, i), counts, lock)

    workers = [threading.Thread(target=thread, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts["cpu_us"] = round((time.process_time() - cpu) * 1e6)
    return counts


def _placer_process(url: str, schema: str | None, rate: float, duration: float, threads: int, seed: int,
                    ready: Any, go: Any, out: Any) -> None:
    """One load process: ``threads`` placers calling ``TradingService`` on the trading DB directly
    (the code path of a node's ``POST /orders`` and ``/pay`` after HTTP: the same unit of work, the
    same transaction writing order, stock and journal events), together ``rate`` orders/s at most."""
    from domain.adapters.payment_sim import SimulatedGateway

    db = build_trading_db(url, schema=schema)
    service = TradingService(db.uow_factory, SimulatedGateway(latency_ms=0.0, jitter=0.0),
                             sleep=lambda s: None)

    def one(n: int, i: int) -> None:
        view = service.place_order(PlaceOrder(
            buyer_id=f"b{seed}-{n}-{i}", tx_type="fixed_price", channel="web" if i % 2 else "app",
            lines=[LineItem(f"P{(seed * 13 + n * 7 + i) % 40}", 1)], address=dict(ADDRESS),
            idempotency_key=f"{seed}-{n}-{i}-{uuid.uuid4().hex[:6]}"))
        if i % 5:
            service.pay_order(view.id)

    counts = _run_paced(threads, rate, duration, ready, go, one)
    db.dispose()
    out.put(dict(counts))


# ------------------------------------------------------------------------ the journal writer
def _bench_order(seed: str, i: int, now: datetime) -> Order:
    """Order ``i``: one unit of ``P<i mod 40>`` at the catalog's price (``_catalog``; no promotion),
    placed by the trading core's model (so its OrderPlaced and StockReserved events are the real ones)."""
    k = i % 40
    shop, price = f"s{k % 4}", 500 + 100 * k
    line = OrderLine(sku=f"P{k}", shop_id=shop, name=f"Item {k}", qty=1, list_price_cents=price,
                     unit_price_cents=price, discount_cents=0, amount_cents=price, pool=DEFAULT_POOL)
    return Order.place(
        order_id=f"o_{uuid.uuid4().hex[:20]}", buyer_id=f"w{seed}-{i}", tx_type="fixed_price",
        channel="web" if i % 2 else "app", address=Address(**ADDRESS), idempotency_key=f"w{seed}-{i}",
        request_hash=uuid.uuid4().hex, sub_orders=[SubOrder(id=f"so_{uuid.uuid4().hex[:20]}", shop_id=shop,
                                                            status=PENDING, lines=[line])],
        now=now, expires_at=now + timedelta(minutes=15))


def _settle(order: Order) -> Payment:
    """The order's payment, charged and succeeded (in memory: the writer writes its outcome)."""
    at = datetime.now(UTC)
    payment = order.begin_payment(f"pay_{uuid.uuid4().hex[:20]}", at, timedelta(seconds=60))
    order.complete_payment(payment.id, ok=True, reference=f"ch_{payment.id}", reason=None, latency_ms=0.0,
                           now=at)
    return payment


class _UowWriter:
    """Any database: the trading core's own write units of work (repository statements; journal rows
    inserted at commit)."""

    def __init__(self, db) -> None:
        self.db = db

    def place(self, order: Order) -> None:
        with self.db.uow_factory() as uow:
            for li in order.lines:
                uow.inventory.try_reserve(li.sku, li.pool, li.qty)
            uow.orders.add(order)
            uow.commit()
            uow.collect_new_events()

    def pay(self, order: Order) -> None:
        with self.db.uow_factory() as uow:
            uow.orders.track(order)
            _settle(order)
            for li in order.lines:
                uow.inventory.commit_sale(li.sku, li.pool, li.qty)
            uow.orders.save(order)
            uow.commit()
            uow.collect_new_events()

    def close(self) -> None:
        pass


class _PipelineWriter:
    """PostgreSQL: the rows ``_UowWriter`` writes (the repository's row builders, the journal's
    ``event_row``), one transaction per placement and per payment, each sent in one round trip
    (psycopg pipeline mode) so that one process can write a fleet's rate on two cores."""

    def __init__(self, url: str, schema: str | None) -> None:
        import psycopg
        from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
        from sqlalchemy.engine import make_url

        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn = psycopg.connect(conninfo, **({"options": f"-csearch_path={schema}"} if schema else {}))
        dialect = PGDialect_psycopg()
        sample = _bench_order("x", 0, datetime.now(UTC))
        rows = new_order_rows(sample)
        rows["payments"] = [payment_row(sample, _settle(sample))]
        rows["domain_events"] = [event_row(sample.events[0])]
        tables = {t.name: t for t in orm.metadata.sorted_tables}
        self.insert = {name: str(insert(tables[name]).compile(dialect=dialect, column_keys=list(r[0])))
                       for name, r in rows.items()}
        i, o, so = orm.inventory.c, orm.orders.c, orm.sub_orders.c
        qty, sku, pool = bindparam("b_qty"), bindparam("b_sku"), bindparam("b_pool")
        at = and_(i.sku == sku, i.pool == pool)

        def sql(stmt: Any) -> str:
            return str(stmt.compile(dialect=dialect))

        self.reserve = sql(update(orm.inventory).where(and_(at, i.on_hand - i.reserved >= qty))
                           .values(reserved=i.reserved + qty))
        self.sell = sql(update(orm.inventory).where(and_(at, i.reserved >= qty, i.on_hand >= qty))
                        .values(on_hand=i.on_hand - qty, reserved=i.reserved - qty))
        self.order_paid = sql(update(orm.orders).where(and_(o.id == bindparam("b_id"), o.version == bindparam(
            "b_version"))).values(status=bindparam("status"), version=bindparam("version")))
        self.sub_paid = sql(update(orm.sub_orders).where(so.id == bindparam("b_id"))
                            .values(status=bindparam("status")))

    def _transaction(self, statements: list[tuple[str, Any]]) -> None:
        conn = self.conn
        with conn.pipeline(), conn.transaction():
            cur = conn.cursor()
            for stmt, params in statements:
                if isinstance(params, list):
                    cur.executemany(stmt, params)
                else:
                    cur.execute(stmt, params)

    def place(self, order: Order) -> None:
        rows = new_order_rows(order)
        self._transaction([
            *((self.reserve, {"b_sku": li.sku, "b_pool": li.pool, "b_qty": li.qty}) for li in order.lines),
            *((self.insert[t], rows[t]) for t in ("orders", "sub_orders", "order_lines")),
            (self.insert["domain_events"], [event_row(e) for e in order.events]),
        ])
        order.events.clear()

    def pay(self, order: Order) -> None:
        version = order.version
        payment = _settle(order)
        self._transaction([
            *((self.sell, {"b_sku": li.sku, "b_pool": li.pool, "b_qty": li.qty}) for li in order.lines),
            (self.order_paid, {"b_id": order.id, "b_version": version, "status": order.status,
                               "version": version + 1}),
            *((self.sub_paid, {"b_id": s.id, "status": s.status}) for s in order.sub_orders),
            (self.insert["payments"], [payment_row(order, payment)]),
            (self.insert["domain_events"], [event_row(e) for e in order.events]),
        ])
        order.version, order.events[:] = version + 1, []

    def close(self) -> None:
        self.conn.close()


def _writer_process(url: str, schema: str | None, rate: float, duration: float, threads: int, seed: int,
                    ready: Any, go: Any, out: Any) -> None:
    """The journal writer (step 3): ``threads`` writers, together ``rate`` orders/s at most, 4 in 5
    paid right after placing (as the placers do)."""
    postgres = url.startswith("postgresql")
    db = None if postgres else build_trading_db(url, schema=schema)
    writers = [_PipelineWriter(url, schema) if postgres else _UowWriter(db) for _ in range(threads)]

    def one(n: int, i: int) -> None:
        order = _bench_order(f"{seed}-{n}", i, datetime.now(UTC))
        writers[n].place(order)
        if i % 5:
            writers[n].pay(order)

    counts = _run_paced(threads, rate, duration, ready, go, one)
    for w in writers:
        w.close()
    if db is not None:
        db.dispose()
    out.put(dict(counts))


class _Load:
    """``procs`` processes running ``target`` (``_placer_process`` or ``_writer_process``), ``threads``
    each, at ``rate`` together (a ceiling: what they achieve on this machine is measured and
    reported, not assumed). Processes, not threads, so placers are not serialised on one
    interpreter lock."""

    def __init__(self, target: Any, url: str, schema: str | None, rate: float, duration: float, procs: int,
                 threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.go = ctx.Event()
        self.out = ctx.Queue()
        self.duration = duration
        self.procs = []
        ready = []
        for k in range(procs):
            r = ctx.Event()
            p = ctx.Process(target=target, daemon=True,
                            args=(url, schema, rate / procs, duration, threads, k, r, self.go, self.out))
            p.start()
            self.procs.append(p)
            ready.append(r)
        for r in ready:  # imports and engines ready before the clock starts
            r.wait(120)
        self.started = 0.0
        self.elapsed = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self.go.set()

    def is_alive(self) -> bool:
        return any(p.is_alive() for p in self.procs) and time.monotonic() - self.started < self.duration + 120

    def result(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for _ in self.procs:
            try:
                counts.update(self.out.get(timeout=60))
            except Exception:
                counts["error:placer-lost"] += 1
        self.elapsed = time.monotonic() - self.started
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        return counts


def _truth(db) -> Counter[str]:
    out: Counter[str] = Counter()
    with db.engine.connect() as conn:
        for name, payload in conn.execute(select(orm.domain_events.c.name, orm.domain_events.c.payload)):
            if name == "OrderPlaced":
                out["placed"] += 1
                out["gmv"] += json.loads(payload)["amount_cents"]
            elif name == "OrderPaid":
                out["paid"] += 1
            elif name == "OrderCancelled":
                out["cancelled"] += 1
            elif name in ("PaymentSucceeded", "PaymentFailed"):
                out["payments"] += 1
    return out


def _store_sums(store, start: datetime, end: datetime) -> Counter[str]:
    out: Counter[str] = Counter()
    for r in store.query(Query("orders", ["placed", "paid", "cancelled", "gmv"], start, end)):
        for k, v in r.values.items():
            out[k] += round((v or 0) * (100 if k == "gmv" else 1))
    for r in store.query(Query("payments", ["success", "failure"], start, end)):
        out["payments"] += round((r.values["success"] or 0) + (r.values["failure"] or 0))
    return out


def _lag_run(kind: str, args, workdir: Path, *, broker, app: str, source: str) -> dict[str, Any]:
    """One lag run with ``source`` ``"tradingservice"`` (the placers) or ``"journal_writer"``."""
    tag = f"lag-{kind}-{source}-{'mq' if isinstance(broker, RabbitMQBroker) else 'ip'}"
    db, schema = _open_db(kind, args.postgres_url, workdir, tag)
    url, _ = _db_url(kind, args.postgres_url, workdir, tag)
    try:
        _service(db)  # the catalog
        relay = _relay(db, schema, workdir, tag, broker, app)
        relay.run_once()  # the seed's events (none) and the lease
        seen: list[datetime] = []
        if isinstance(broker, InProcessBroker):
            broker.subscribe(lambda e: seen.append(e.occurred_at))
        lags: list[float] = []
        start = datetime.now(UTC) - timedelta(seconds=5)
        if source == "tradingservice":
            load = _Load(_placer_process, url, schema, args.rate, args.duration, args.procs, args.threads)
        else:
            load = _Load(_writer_process, url, schema, args.rate, args.duration, args.writer_procs,
                         args.writer_threads)
        load.start()
        next_cycle = time.monotonic()
        cursor_seen = 0

        def cycle() -> None:
            nonlocal cursor_seen
            out = relay.run_once()
            done = datetime.now(UTC)
            if isinstance(broker, InProcessBroker):
                lags.extend((done - at).total_seconds() for at in seen)
                seen.clear()
            elif out.events:
                rows = relay.journal.tail(cursor_seen, limit=out.events + 10_000)
                lags.extend((done - r.occurred_at).total_seconds() for r in rows if r.id <= out.cursor)
            cursor_seen = max(cursor_seen, out.cursor)

        while load.is_alive():
            next_cycle += 1.0  # the worker's schedule
            time.sleep(max(0.0, next_cycle - time.monotonic()))
            cycle()
        counts = load.result()
        elapsed = min(load.elapsed, args.duration) or args.duration
        for _ in range(30):  # drain what is left
            cycle()
            if relay.last and relay.last.lag_s == 0.0:
                break
        truth = _truth(db)
        got = _store_sums(relay.store, start, datetime.now(UTC) + timedelta(minutes=1))
        missing = sum(max(0, truth[k] - got[k]) for k in COUNTED)
        double = sum(max(0, got[k] - truth[k]) for k in COUNTED)
        relay.close()
        lags.sort()

        def q(p: float) -> float | None:
            return lags[min(len(lags) - 1, int(p * len(lags)))] if lags else None

        return {"source": source, "orders": counts["orders"], "orders_per_s": counts["orders"] / elapsed,
                "cpu_ms_per_order": counts["cpu_us"] / 1000 / counts["orders"] if counts["orders"] else None,
                "errors": {k: v for k, v in counts.items() if k.startswith("error")},
                "events": len(lags), "lag_p50_s": q(0.5), "lag_p99_s": q(0.99), "missing": missing,
                "double_counted": double}
    finally:
        _drop(db, schema)


def _collect_queue(amqp_url: str, app: str):
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    ch.exchange_declare("tradeguard.events", exchange_type="topic", durable=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, "tradeguard.events", routing_key=f"{app}.#")
    return conn, ch, queue


def _drain_ids(ch, queue: str, expect: int, idle_s: float = 15.0) -> set[str]:
    """Message ids in the queue, consumed with a prefetch window (``basic_get`` costs one round
    trip per message: on a busy machine it could not drain 20,000 in time and counted the rest as
    lost). Stops at ``expect`` ids or after ``idle_s`` without a new message."""
    ids: set[str] = set()
    last = time.monotonic()

    def on_message(_ch, _method, props, _body) -> None:
        nonlocal last
        ids.add(props.message_id)
        last = time.monotonic()

    ch.basic_qos(prefetch_count=2000)
    tag = ch.basic_consume(queue, on_message, auto_ack=True)
    while len(ids) < expect and time.monotonic() - last < idle_s:
        ch.connection.process_data_events(time_limit=0.2)
    ch.basic_cancel(tag)
    return ids


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    has_pg = _port_open("127.0.0.1", 5432)
    has_mq = _port_open("127.0.0.1", 5672)
    with tempfile.TemporaryDirectory(prefix="tg-bench-relay-") as tmp:
        workdir = Path(tmp)
        say(f"throughput: {args.events} journal events")
        sq = _throughput("sqlite", args, workdir)
        result["events_per_s_sqlite"] = round(sq["events_per_s"])
        result["read_only_events_per_s_sqlite"] = round(sq["read_only_events_per_s"])
        result["relay_cpu_us_per_event_sqlite"] = round(sq["cpu_us_per_event"])
        say(f"  sqlite: {sq['events_per_s']:,.0f} events/s "
            f"(read-only baseline {sq['read_only_events_per_s']:,.0f})")
        if has_pg:
            pg = _throughput("postgres", args, workdir)
            result["events_per_s_postgres"] = round(pg["events_per_s"])
            result["read_only_events_per_s_postgres"] = round(pg["read_only_events_per_s"])
            result["relay_cpu_us_per_event_postgres"] = round(pg["cpu_us_per_event"])
            say(f"  postgres: {pg['events_per_s']:,.0f} events/s "
                f"(read-only baseline {pg['read_only_events_per_s']:,.0f})")
        else:
            result["events_per_s_postgres"] = None
            say("  postgres: not listening on 127.0.0.1:5432, skipped")
        lag_db = "postgres" if has_pg else "sqlite"
        say(f"real orders: {args.rate:g} orders/s targeted ({args.procs} processes x {args.threads} placers, "
            f"TradingService on the trading DB) for {args.duration:g} s on {lag_db}, in-process broker")
        real = _lag_run(lag_db, args, workdir, broker=InProcessBroker(), app="bench", source="tradingservice")
        say(f"  {real}")
        result.update({
            "lag_db": lag_db, "orders_target_per_s": args.rate,
            "orders_per_s_tradingservice": round(real["orders_per_s"], 1),
            "placers": f"{args.procs} processes x {args.threads} threads",
            "placer_cpu_ms_per_order": _round(real["cpu_ms_per_order"], 2),
            "lag_p50_s_tradingservice": real["lag_p50_s"], "lag_p99_s_tradingservice": real["lag_p99_s"],
            "errors_tradingservice": real["errors"],
            "missing": real["missing"], "double_counted": real["double_counted"]})
        # the lag at the target rate: the real orders when the placers reached it, else a journal writer
        source = "tradingservice" if real["orders_per_s"] >= 0.95 * args.rate else "journal_writer"
        if source == "tradingservice":
            at_rate = real
        else:
            say(f"  the placers reached {real['orders_per_s']:.0f} of {args.rate:g} orders/s at "
                f"{real['cpu_ms_per_order'] or 0:.1f} ms of their own CPU per order "
                f"on {os.cpu_count()} cores")
            say(f"journal writer: {args.rate:g} orders/s targeted ({args.writer_procs} processes x "
                f"{args.writer_threads} transactions in flight) for {args.duration:g} s on {lag_db}, "
                "in-process broker")
            at_rate = _lag_run(lag_db, args, workdir, broker=InProcessBroker(), app="benchw", source=source)
            say(f"  {at_rate}")
            result["missing"] += at_rate["missing"]
            result["double_counted"] += at_rate["double_counted"]
            result["writer_cpu_ms_per_order"] = _round(at_rate["cpu_ms_per_order"], 2)
            result["journal_writers"] = f"{args.writer_procs} processes x {args.writer_threads} threads"
            result["errors_journal_writer"] = at_rate["errors"]
        result.update({"lag_orders_source": source, "lag_p50_s": at_rate["lag_p50_s"],
                       "lag_p99_s": at_rate["lag_p99_s"], "lag_events": at_rate["events"],
                       "lag_orders_per_s": round(at_rate["orders_per_s"], 1)})
        if has_mq:
            app = f"bench{uuid.uuid4().hex[:8]}"
            conn, ch, queue = _collect_queue(args.amqp_url, app)
            broker = RabbitMQBroker(args.amqp_url, app=app)
            say("broker throughput: RabbitMQ with publisher confirms")
            mq = _throughput("sqlite", args, workdir, broker=broker, app=app)
            got = _drain_ids(ch, queue, args.events)
            result["broker_events_per_s"] = round(mq["events_per_s"])
            result["broker_lost"] = args.events - len(got)
            result["relay_cpu_us_per_event_broker"] = round(mq["cpu_us_per_event"])
            say(f"  {mq['events_per_s']:,.0f} events/s; delivered {len(got)} of {args.events}")
            say(f"lag with RabbitMQ on: {args.rate:g} orders/s ({source}) for {args.duration:g} s "
                f"on {lag_db}")
            broker = RabbitMQBroker(args.amqp_url, app=app + "l")
            lag_mq = _lag_run(lag_db, args, workdir, broker=broker, app=app + "l", source=source)
            say(f"  {lag_mq}")
            result.update({"lag_p50_s_broker": lag_mq["lag_p50_s"], "lag_p99_s_broker": lag_mq["lag_p99_s"],
                           "lag_orders_per_s_broker": round(lag_mq["orders_per_s"], 1)})
            result["missing"] += lag_mq["missing"]
            result["double_counted"] += lag_mq["double_counted"]
            conn.close()
        else:
            result.update({"broker_events_per_s": None, "broker_lost": None})
            say("  RabbitMQ not listening on 127.0.0.1:5672: broker runs skipped")
    result["targets"] = {"events_per_s": 5000, "lag_p99_s": 2.0, "missing": 0, "double_counted": 0,
                         "broker_lost": 0}
    for key in ("lag_p50_s", "lag_p99_s", "lag_p50_s_broker", "lag_p99_s_broker", "lag_p50_s_tradingservice",
                "lag_p99_s_tradingservice"):
        if isinstance(result.get(key), float):
            result[key] = round(result[key], 3)
    return result
