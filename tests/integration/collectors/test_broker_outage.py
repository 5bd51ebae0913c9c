"""A real RabbitMQ outage under load: ``rabbitmqctl stop_app`` for 30 s while orders keep being
placed and the relay keeps its 0.5-second schedule, then ``rabbitmqctl start_app``.

While the broker is down every relay cycle stops before it saves the cursor (the cursor stays where
it was), the journal grows behind it; once the broker is back the relay catches up, and a durable
queue bound to the run's routing keys holds every journal id (message id = journal id), while the
metric store's sums equal the books. ``stop_app`` pauses the RabbitMQ application without killing
the Erlang node; the test ALWAYS runs ``start_app`` again in a ``finally`` and waits for the port,
because the server is shared. It takes ~45 s. Skips (fails under ``TRADEGUARD_REQUIRE_SERVICES=1``)
when ``rabbitmqctl`` is absent or cannot reach the node, or nothing listens on 127.0.0.1:5672."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import replace

import pika
import pytest

from collectors.broker import RabbitMQBroker
from domain.adapters.unit_of_work import build_trading_db
from domain.errors import OutOfStock
from domain.model import StockLevel
from tests.integration.collectors.test_relay_sql import AMQP_URL, run_until_caught_up
from tests.services import need, port_open
from tests.unit.collectors.relay_env import RelayEnv
from tests.unit.domain.helpers import small_catalog

OUTAGE_S = 30.0
CYCLE_S = 0.5

pytestmark = pytest.mark.timeout(240)


def _rabbitmqctl(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout)


def _need_controllable_rabbitmq() -> None:
    need(shutil.which("rabbitmqctl") is not None,
         "`rabbitmqctl` is not installed (Debian package `rabbitmq-server`): cannot stop the broker")
    need(port_open("127.0.0.1", 5672), "RabbitMQ is not listening on 127.0.0.1:5672")
    try:
        ping = _rabbitmqctl("-q", "ping", timeout=60)
        reachable, why = ping.returncode == 0, (ping.stderr or ping.stdout).strip()[:300]
    except (OSError, subprocess.TimeoutExpired) as exc:
        reachable, why = False, repr(exc)
    need(reachable, f"`rabbitmqctl ping` cannot reach the RabbitMQ node (not root? other node?): {why}")


def _start_app() -> None:
    """Start the RabbitMQ application (idempotent) and wait until it accepts AMQP connections."""
    out = _rabbitmqctl("start_app")
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", 5672):
        assert time.monotonic() < deadline, f"RabbitMQ did not come back: {out.stdout} {out.stderr}"
        time.sleep(0.2)


def test_rabbitmq_stopped_for_30_s_under_load_loses_nothing(tmp_path):
    _need_controllable_rabbitmq()
    db = build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")
    env = RelayEnv(db, tmp_path, seed=False)
    catalog = small_catalog()
    env.service.seed(replace(catalog, stock=[StockLevel(s.sku, s.pool, 100_000) for s in catalog.stock]))
    app = f"tgout{uuid.uuid4().hex[:8]}"
    queue = f"{app}-collect"
    admin = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = admin.channel()
    ch.exchange_declare("tradeguard.events", exchange_type="topic", durable=True)
    # durable, so it outlives stop_app with the persistent messages it holds; expires if left behind
    ch.queue_declare(queue, durable=True, arguments={"x-expires": 600_000})
    ch.queue_bind(queue, "tradeguard.events", routing_key=f"{app}.#")
    admin.close()

    stop = threading.Event()
    placed = [0]

    def place() -> None:  # the load, ~20 orders/s until told to stop (bounded by the catalog's stock)
        while not stop.is_set():
            try:
                env.place([("A1" if placed[0] % 2 else "A3", 1)], pay=placed[0] % 3 != 2)
            except OutOfStock:
                return
            placed[0] += 1
            time.sleep(0.05)

    broker = RabbitMQBroker(AMQP_URL, app=app, connect_timeout_s=2, confirm_timeout_s=10)
    relay = env.relay(broker=broker)
    relay.app = app
    load = threading.Thread(target=place, daemon=True)
    stopped = False
    timings: dict[str, float] = {}
    try:
        load.start()
        started = time.monotonic()
        while relay.control.cursor()[1] == 0 or time.monotonic() - started < 2.0:  # broker up: it relays
            assert time.monotonic() - started < 60, f"the relay never moved with the broker up: {relay.last}"
            time.sleep(CYCLE_S)
            out = relay.run_once()
            # a cycle may stop on SQLite's single writer (the load writes too) and is retried; never on
            # the broker while it is up
            assert out.error is None or "did not confirm" not in out.error, out.error
        t = time.monotonic()
        stopped = True
        out = _rabbitmqctl("stop_app")
        timings["stop_app_s"] = time.monotonic() - t
        assert out.returncode == 0, out.stderr
        assert not port_open("127.0.0.1", 5672)

        outage_end = time.monotonic() + OUTAGE_S
        failed: list = []
        while time.monotonic() < outage_end:
            cycle = relay.run_once()
            if cycle.error:
                assert "did not confirm" in cycle.error and "guest:guest" not in cycle.error
                failed.append(cycle)
            time.sleep(CYCLE_S)
        assert len(failed) >= 10, failed  # every cycle of the outage stopped…
        held = failed[0].cursor
        assert all(c.cursor == held and c.events == 0 for c in failed[1:])  # …with the cursor held
        behind = env.journal.tail(held, limit=100_000)
        assert len(behind) > 100, "the load should have written events behind the held cursor"

        t = time.monotonic()
        _start_app()
        stopped = False
        timings["start_app_s"] = time.monotonic() - t
        for _ in range(4):  # back: it catches up while the load goes on
            time.sleep(CYCLE_S)
            relay.run_once()
        stop.set()
        load.join(30)
        run_until_caught_up(relay, timeout_s=60)
        assert relay.last.cursor > held
    finally:
        stop.set()
        if stopped:
            _start_app()
    print(f"rabbitmqctl timings: {timings}; orders placed: {placed[0]}")

    journal = env.journal.tail(limit=100_000)
    ids: set[str] = set()
    consumer = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = consumer.channel()
    try:
        deadline = time.monotonic() + 30
        while len(ids) < len(journal) and time.monotonic() < deadline:
            method, props, _body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                time.sleep(0.05)
                continue
            assert method.routing_key.startswith(f"{app}.") and props.delivery_mode == 2
            ids.add(props.message_id)
    finally:
        ch.queue_delete(queue)
        consumer.close()
    assert ids == {str(r.id) for r in journal}  # nothing lost (duplicates, if any, dropped by id)
    env.assert_equal()
    relay.close()
    db.dispose()
