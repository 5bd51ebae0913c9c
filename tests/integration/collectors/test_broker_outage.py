"""RabbitMQ outage under load (the shared server is never stopped: the relay points at a closed port,
then at the real one): orders keep being placed meanwhile, the cursor waits, and after the broker is
back every journal event arrives (message id = journal id), the figures equal the books."""

from __future__ import annotations

import threading
import time
import uuid

import pika

from collectors.broker import RabbitMQBroker
from domain.adapters.unit_of_work import build_trading_db
from domain.errors import OutOfStock
from tests.integration.collectors.test_relay_sql import AMQP_URL, _need_rabbitmq, run_until_caught_up
from tests.unit.collectors.relay_env import RelayEnv


def test_broker_outage_under_load_loses_nothing(tmp_path):
    _need_rabbitmq()
    db = build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")
    env = RelayEnv(db, tmp_path)
    app = f"tgout{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    ch.exchange_declare("tradeguard.events", exchange_type="topic", durable=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, "tradeguard.events", routing_key=f"{app}.#")
    stop = threading.Event()
    lock = threading.Lock()

    def place() -> None:  # load while the broker is out (bounded: stops on the event or after 200 orders)
        for i in range(200):
            if stop.is_set():
                return
            with lock:
                try:
                    env.place([("A1" if i % 2 else "A3", 1)], pay=True)
                except OutOfStock:
                    return
            time.sleep(0.01)

    load = threading.Thread(target=place, daemon=True)
    load.start()
    dead = RabbitMQBroker("amqp://guest:guest@127.0.0.1:1/%2F", app=app, connect_timeout_s=1)
    relay = env.relay(broker=dead)
    relay.app = app
    for _ in range(3):  # the outage: every cycle stops, the cursor stays at 0
        out = relay.run_once()
        assert out.error and "did not confirm" in out.error and out.cursor == 0
        time.sleep(0.3)
    broker = RabbitMQBroker(AMQP_URL, app=app)
    relay.broker = broker  # back: it catches up while the load goes on
    for _ in range(3):
        assert relay.run_once().error is None
        time.sleep(0.2)
    stop.set()
    load.join(30)
    run_until_caught_up(relay)
    journal = env.journal.tail(limit=100_000)
    assert len(journal) > 20
    ids: set[str] = set()
    deadline = time.monotonic() + 15
    while len(ids) < len(journal) and time.monotonic() < deadline:
        method, props, _body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        ids.add(props.message_id)
    assert ids == {str(r.id) for r in journal}  # nothing lost
    env.assert_equal()
    relay.close()
    conn.close()
    db.dispose()
