"""Business figures equal the books, with a fleet: two real ``tradeguard node`` processes on one trading
DB and a ``tradeguard worker`` running the journal relay, concurrent orders on one shop through both
nodes (some shipped, delivered and received through the HTTP API), then ``sum(placed)``, ``sum(paid)``,
``sum(gmv)``, refunds and the ``deliveries`` steps in the metric store equal the trading DB — on
PostgreSQL + a real influxd 1.6 and on SQLite + the embedded store; with a node SIGKILLed mid-stream
and restarted; with the relay (worker) SIGKILLed mid-stream and restarted.

Each case is bounded: a fixed load window (15 s, 10 s for the crash cases), ≤ 4 placer threads, and
a catch-up deadline; the processes are stopped whatever happens."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from collectors.query import Query
from collectors.registry import open_store
from collectors.relay import RelayControl, relay_check
from domain.adapters import orm
from tests.e2e.test_node_http import ADDRESS, AUTH, cli, node_env, wait_healthy
from tests.services import POSTGRES_URL, free_port, need_binary, need_postgres

pytestmark = pytest.mark.e2e

COUNTED = ("placed", "paid", "gmv", "refunds", "refund_amount", "shipped", "delivered", "received")
CARRIERS = ("SF", "YTO")


class Proc:
    """One CLI process with its log; ``kill()`` is SIGKILL, ``stop()`` a graceful SIGTERM."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name, self.args, self.env, self.cwd = name, args, env, cwd
        self.log_path = cwd / f"{name}.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "a") as fh:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=fh,
                                         stderr=subprocess.STDOUT, text=True)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Fleet:
    def __init__(self, tmp: Path, trading_url: str, metrics_url: str) -> None:
        self.tmp = tmp
        self.env = {**node_env(tmp), "TRADEGUARD_TRADING_DB": trading_url,
                    "TRADEGUARD_CONTROL_DB": f"sqlite:///{tmp}/var/control.db",
                    "TRADEGUARD_METRICS_URL": metrics_url}
        self.trading_url = trading_url
        self.metrics_url = metrics_url
        self.nodes: dict[str, tuple[Proc, str]] = {}
        self.worker: Proc | None = None

    def node(self, name: str, port: int | None = None) -> str:
        port = port or free_port()
        proc = Proc(name, cli("node", "--port", str(port)), {**self.env, "TRADEGUARD_INSTANCE": name},
                    self.tmp).start()
        url = f"http://127.0.0.1:{port}"
        self.nodes[name] = (proc, url)
        return url

    def wait_nodes(self) -> None:
        for proc, url in self.nodes.values():
            assert proc.proc is not None
            wait_healthy(url, proc.proc, proc.log_path, timeout=60)

    def start_worker(self) -> None:
        self.worker = Proc("worker", cli("worker"), {**self.env, "TRADEGUARD_INSTANCE": "worker"},
                           self.tmp).start()

    def close(self) -> None:
        for proc, _url in self.nodes.values():
            proc.stop()
        if self.worker is not None:
            self.worker.stop()


# ------------------------------------------------------------------ load: one shop, both nodes


def _shop_skus(url: str) -> list[str]:
    shops = httpx.get(f"{url}/shops", timeout=10).raise_for_status().json()
    for shop in shops:
        products = httpx.get(f"{url}/shops/{shop['id']}/products", timeout=10).raise_for_status().json()
        skus = [p["sku"] for p in products if p["available"] > 500]
        if len(skus) >= 2:
            return skus
    pytest.fail("no shop with two well-stocked products in the demo catalog")


def _placer(urls: list[str], skus: list[str], stop_at: float, n: int, counts: Counter[str],
            lock: threading.Lock) -> None:
    rnd = random.Random(n)
    with httpx.Client(timeout=5) as client:
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            url = urls[(n + i) % len(urls)]  # alternate nodes: both write the same shop's orders
            sku = rnd.choice(skus)
            try:
                r = client.post(f"{url}/orders", json={
                    "buyer_id": f"fleet-{n}-{i}", "tx_type": "fixed_price",
                    "channel": rnd.choice(["web", "app"]), "lines": [{"sku": sku, "qty": 1}],
                    "address": ADDRESS, "idempotency_key": uuid.uuid4().hex})
                if r.status_code != 201:
                    with lock:
                        counts[f"place_{r.status_code}"] += 1
                    continue
                order = r.json()
                with lock:
                    counts["placed"] += 1
                if i % 5 == 0:
                    continue  # left unpaid
                pay_url = urls[(n + i + 1) % len(urls)]  # paid through the other node
                if client.post(f"{pay_url}/orders/{order['id']}/pay").status_code != 200:
                    continue
                if i % 7 == 0:
                    ref = client.post(f"{url}/orders/{order['id']}/refunds",
                                      json={"lines": [{"sku": sku, "qty": 1}]})
                    if ref.status_code == 201:
                        client.post(f"{pay_url}/refunds/{ref.json()['id']}/complete", headers=AUTH)
                elif i % 3 == 0:  # fulfilment through both nodes: shipped, most delivered, some received
                    _fulfil(client, url, pay_url, order, i, rnd)
            except httpx.HTTPError:  # a node killed mid-request: the DB decides what committed
                with lock:
                    counts["http_error"] += 1
            time.sleep(0.01)


def _fulfil(client: httpx.Client, url: str, other_url: str, order: dict, i: int, rnd: random.Random) -> None:
    for sub in order["sub_orders"]:
        shipped = client.post(f"{url}/sub-orders/{sub['id']}/ship", headers=AUTH,
                              json={"carrier": rnd.choice(CARRIERS), "tracking_no": f"T-{sub['id']}"})
        if shipped.status_code != 200 or i % 9 == 0:
            continue  # on its way
        if client.post(f"{other_url}/sub-orders/{sub['id']}/deliver", headers=AUTH).status_code != 200:
            continue
        if i % 2 == 0:
            client.post(f"{url}/sub-orders/{sub['id']}/receive")


def run_load(fleet: Fleet, seconds: float, *, threads: int = 4, at_half=None) -> Counter[str]:
    urls = [url for _p, url in fleet.nodes.values()]
    skus = _shop_skus(urls[0])[:4]
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    workers = [threading.Thread(target=_placer, args=(urls, skus, stop_at, n, counts, lock), daemon=True)
               for n in range(threads)]
    for w in workers:
        w.start()
    if at_half is not None:
        time.sleep(seconds / 2)
        at_half()
    for w in workers:
        w.join(seconds + 30)
    assert not any(w.is_alive() for w in workers), "placer threads did not stop"
    return counts


# ------------------------------------------------------------------ the books and the figures


def books(trading_url: str) -> Counter[str]:
    """What the trading DB holds: its journal's sums, cross-checked against its tables."""
    engine = create_engine(trading_url.replace("postgresql://", "postgresql+psycopg://"))
    out: Counter[str] = Counter()
    try:
        with engine.connect() as conn:
            t = orm.domain_events
            for name, payload in conn.execute(select(t.c.name, t.c.payload)):
                p = json.loads(payload)
                if name == "OrderPlaced":
                    out["placed"] += 1
                    out["gmv"] += int(p["amount_cents"])
                elif name == "OrderPaid":
                    out["paid"] += 1
                elif name == "RefundCompleted":
                    out["refunds"] += 1
                    out["refund_amount"] += int(p["amount_cents"])
                elif name in ("SubOrderShipped", "SubOrderDelivered", "SubOrderReceived"):
                    out[f"journal_{name}"] += 1
            sub_orders = conn.execute(select(func.count()).select_from(orm.sub_orders)).scalar_one()
            s = orm.sub_orders
            for step in ("shipped", "delivered", "received"):
                column = getattr(s.c, f"{step}_at")
                out[step] = conn.execute(select(func.count()).select_from(s).where(column.is_not(None))
                                         ).scalar_one()
            done = conn.execute(select(func.count()).select_from(orm.refunds)
                                .where(orm.refunds.c.status == "completed")).scalar_one()
    finally:
        engine.dispose()
    assert out["placed"] == sub_orders, "journal and sub_orders disagree"
    assert out["refunds"] == done, "journal and refunds disagree"
    assert (out["shipped"], out["delivered"], out["received"]) == (
        out["journal_SubOrderShipped"], out["journal_SubOrderDelivered"], out["journal_SubOrderReceived"]
    ), "journal and sub_orders' delivery steps disagree"
    return out


def figures(metrics_url: str, start: datetime) -> Counter[str]:
    store = open_store(metrics_url)
    end = datetime.now(UTC) + timedelta(minutes=5)
    out: Counter[str] = Counter()
    try:
        for r in store.query(Query("orders", ["placed", "paid", "gmv"], start, end)):
            out["placed"] += round(r.values.get("placed") or 0)
            out["paid"] += round(r.values.get("paid") or 0)
            out["gmv"] += round((r.values.get("gmv") or 0) * 100)
        for r in store.query(Query("refunds", ["completed", "amount"], start, end)):
            out["refunds"] += round(r.values.get("completed") or 0)
            out["refund_amount"] += round((r.values.get("amount") or 0) * 100)
        for r in store.query(Query("deliveries", ["shipped", "delivered", "received"], start, end)):
            for step in ("shipped", "delivered", "received"):
                out[step] += round(r.values.get(step) or 0)
    finally:
        store.close()
    return out


def assert_figures_equal_books(fleet: Fleet, start: datetime, timeout_s: float = 45.0) -> Counter[str]:
    truth = books(fleet.trading_url)
    assert truth["placed"] > 20 and truth["paid"] > 10 and truth["refunds"] > 0, truth
    assert truth["shipped"] > 0 and truth["delivered"] > 0 and truth["received"] > 0, truth
    deadline = time.monotonic() + timeout_s
    got: Counter[str] = Counter()
    while time.monotonic() < deadline:  # the relay catches up within a few cycles (or a lease TTL)
        got = figures(fleet.metrics_url, start)
        if all(got[k] == truth[k] for k in COUNTED):
            return truth
        time.sleep(1.0)
    log = fleet.worker.log_path.read_text()[-3000:] if fleet.worker else ""
    pytest.fail(f"metric store {dict(got)} != trading DB {dict(truth)}\nworker log:\n{log}")


# ------------------------------------------------------------------ stores


@pytest.fixture(scope="module")
def influxd():
    from collectors.localserver import LocalInfluxd

    server = LocalInfluxd(need_binary("influxd", "influxdb")).start()
    yield server
    server.stop()


@pytest.fixture
def pg_database():
    """A fresh PostgreSQL database for one test, dropped after."""
    need_postgres()
    import psycopg

    name = f"tg_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stores(kind: str, tmp: Path, request) -> tuple[str, str]:
    if kind == "postgres-influxdb":
        server = request.getfixturevalue("influxd")
        trading = request.getfixturevalue("pg_database")
        return trading, f"influxdb://127.0.0.1:{server.port}/tg_{uuid.uuid4().hex[:10]}?api=v1"
    return f"sqlite:///{tmp}/var/trading.db", f"sqlite:///{tmp}/var/metrics.db"


def _fleet(tmp: Path, trading: str, metrics: str) -> Fleet:
    fleet = Fleet(tmp, trading, metrics)
    seeded = subprocess.run(cli("seed"), env=fleet.env, cwd=tmp, capture_output=True, text=True, timeout=90)
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    return fleet


# ------------------------------------------------------------------ the cases


@pytest.mark.parametrize("kind", ["postgres-influxdb", "sqlite-embedded"])
def test_two_nodes_one_shop_figures_equal_the_books(kind, tmp_path, request):
    trading, metrics = _stores(kind, tmp_path, request)
    fleet = _fleet(tmp_path, trading, metrics)
    start = datetime.now(UTC) - timedelta(minutes=1)
    try:
        fleet.node("node-a")
        fleet.node("node-b")
        fleet.start_worker()
        fleet.wait_nodes()
        counts = run_load(fleet, 15.0)
        assert counts["placed"] > 20, counts
        for proc, _url in fleet.nodes.values():  # graceful stop of the nodes; the relay catches up
            proc.stop()
        assert_figures_equal_books(fleet, start)
        # the relay as every node's /ops/health shows it (read from the control DB): led, caught up
        control = RelayControl.from_url(fleet.env["TRADEGUARD_CONTROL_DB"], holder="test-probe")
        try:
            relay = relay_check(control.status())
        finally:
            control.engine.dispose()
        assert relay["status"] == "ok", relay
    finally:
        fleet.close()


@pytest.mark.parametrize("kind", ["postgres-influxdb"])
def test_a_node_sigkilled_mid_stream_and_restarted_figures_still_equal(kind, tmp_path, request):
    trading, metrics = _stores(kind, tmp_path, request)
    fleet = _fleet(tmp_path, trading, metrics)
    start = datetime.now(UTC) - timedelta(minutes=1)
    try:
        fleet.node("node-a")
        url_b = fleet.node("node-b")
        fleet.start_worker()
        fleet.wait_nodes()
        port_b = int(url_b.rsplit(":", 1)[1])

        def crash_b() -> None:
            fleet.nodes["node-b"][0].kill()  # SIGKILL mid-stream: requests on it fail meanwhile
            time.sleep(1.0)
            fleet.node("node-b", port_b)  # restarted on the same address: the placers use it again

        counts = run_load(fleet, 12.0, at_half=crash_b)
        assert counts["placed"] > 20, counts
        proc_b, _ = fleet.nodes["node-b"]
        assert proc_b.proc is not None
        wait_healthy(url_b, proc_b.proc, proc_b.log_path, timeout=60)
        health = httpx.get(f"{url_b}/ops/health", timeout=5).json()  # the restarted node shows the relay
        assert health["stores"]["relay"]["status"] in ("ok", "error", "lagging"), health["stores"]["relay"]
        assert isinstance(health["stores"]["relay"]["relay_cursor"], int)
        for proc, _url in fleet.nodes.values():
            proc.stop()
        assert_figures_equal_books(fleet, start)
    finally:
        fleet.close()


@pytest.mark.parametrize("kind", ["postgres-influxdb"])
def test_the_relay_sigkilled_mid_stream_and_restarted_counts_nothing_twice(kind, tmp_path, request):
    trading, metrics = _stores(kind, tmp_path, request)
    fleet = _fleet(tmp_path, trading, metrics)
    start = datetime.now(UTC) - timedelta(minutes=1)
    try:
        fleet.node("node-a")
        fleet.node("node-b")
        fleet.start_worker()
        fleet.wait_nodes()

        def crash_worker() -> None:
            assert fleet.worker is not None
            fleet.worker.kill()  # SIGKILL: its relay lease stays until its TTL; the restart takes over
            fleet.start_worker()

        counts = run_load(fleet, 12.0, at_half=crash_worker)
        assert counts["placed"] > 20, counts
        for proc, _url in fleet.nodes.values():
            proc.stop()
        assert_figures_equal_books(fleet, start, timeout_s=60.0)  # ≥ one lease TTL (10 s) to take over
    finally:
        fleet.close()
