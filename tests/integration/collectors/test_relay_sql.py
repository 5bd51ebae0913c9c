"""The journal relay on real databases: SQLite files and PostgreSQL (late commits, a relay killed
mid-batch), and the RabbitMQ adapter against the real server."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import insert, select, text

from collectors.broker import RabbitMQBroker
from collectors.relay import JournalRelay
from domain.adapters import orm
from domain.adapters.unit_of_work import build_trading_db
from tests.services import need, need_postgres, port_open
from tests.unit.collectors.relay_env import RelayEnv, delivery_catalog

PG_SCHEMA = f"tg_relay_test_{os.getpid()}"
AMQP_URL = os.environ.get("TRADEGUARD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _relay_env(kind: str, tmp_path) -> Iterator[RelayEnv]:
    if kind == "sqlite":
        db = build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")
    else:
        db = build_trading_db(need_postgres(), schema=PG_SCHEMA, reset=True)
    yield RelayEnv(db, tmp_path, catalog=delivery_catalog())
    if kind == "postgres":
        with db.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
    db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def env(request, tmp_path):
    yield from _relay_env(request.param, tmp_path)


@pytest.fixture
def pg_env(tmp_path):
    """PostgreSQL only: transactions there commit out of id order (SQLite's single writer cannot)."""
    yield from _relay_env("postgres", tmp_path)


def run_until_caught_up(relay: JournalRelay, timeout_s: float = 30.0) -> None:
    """Other sessions' transactions on a shared server may hold the horizon for a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = relay.run_once()
        assert out.leader, out
        if out.error is None and out.lag_s == 0.0:
            return
        assert time.monotonic() < deadline, f"relay never caught up: {out}"
        time.sleep(0.2)


def _load(env: RelayEnv, n: int = 12) -> None:
    for i in range(n):
        lines = [("A3", 1), ("B1" if i % 8 == 0 else "A1", 1)] if i % 4 == 0 else [("A3", 1)]
        oid = env.place(lines, pay=i % 3 != 2, channel="web" if i % 2 else "app")
        if i % 5 == 0 and i % 3 != 2:
            env.refund(oid, "A3")
        env.clock.advance(seconds=0.4)


def test_sums_equal_the_db(env):
    _load(env)
    run_until_caught_up(env.relay())
    env.assert_equal()


def test_relay_killed_mid_batch_and_restarted_counts_nothing_twice(env):
    _load(env, 20)
    relay = env.relay("a", batch_size=7, ttl_s=5)
    real_write = env.store.write
    writes = {"n": 0}

    def killed_after_second_write(points):
        real_write(points)
        writes["n"] += 1
        if writes["n"] == 2:  # the batch's points are in the store, its cursor is not saved
            raise SystemExit("relay killed")

    env.store.write = killed_after_second_write
    with pytest.raises(SystemExit):
        relay.run_once()
    env.store.write = real_write
    # no renewal any more: the lease runs out, a restarted worker takes over from the durable cursor
    env.clock.advance(seconds=6)
    restarted = env.relay("b", batch_size=7)
    run_until_caught_up(restarted)
    env.assert_equal()
    # and the per-SKU read model counted each paid line once
    from domain.adapters.sku_sales import SkuSalesModel

    model = SkuSalesModel(env.db.engine)
    units = sum(r["units"] for r in model.rows())
    with env.db.engine.connect() as conn:
        paid_sub_orders = [json.loads(p)["sub_order_id"] for (p,) in conn.execute(
            select(orm.domain_events.c.payload).where(orm.domain_events.c.name == "OrderPaid"))]
        lines = conn.execute(select(orm.order_lines.c.sub_order_id, orm.order_lines.c.qty)).all()
    assert units == sum(q for s, q in lines if s in set(paid_sub_orders))


def test_a_late_committing_transaction_is_not_skipped(pg_env):
    env = pg_env
    env.place([("A3", 1)], pay=True)
    relay = env.relay()
    run_until_caught_up(relay)
    t = orm.domain_events
    late = env.db.engine.connect()
    tx = late.begin()
    try:
        payload = {"order_id": "late-1", "sub_order_id": "late-1-s", "shop_id": "s1", "buyer_id": "b",
                   "tx_type": "fixed_price", "channel": "app", "gross_cents": 700, "discount_cents": 0,
                   "amount_cents": 700, "items": 1, "occurred_at": env.clock.now().isoformat()}
        late_id = late.execute(insert(t).values(occurred_at=env.clock.now(), name="OrderPlaced",
                                                order_id="late-1", payload=json.dumps(payload))
                               .returning(t.c.id)).scalar_one()
        env.place([("A3", 2)], pay=True)  # later ids commit while the first is in flight
        with env.db.engine.connect() as conn:
            visible = [r.id for r in conn.execute(select(t.c.id).where(t.c.id > late_id))]
        assert visible, "later ids are committed and visible"  # an `id > cursor` reader would skip late_id
        env.clock.advance(seconds=5)
        out = relay.run_once()
        assert out.error is None
        assert relay.control.cursor()[1] < late_id  # the cursor waits below the in-flight transaction
        assert out.lag_s is not None and out.lag_s >= 5.0  # ... and the lag shows it
        tx.commit()
    finally:
        late.close()
    run_until_caught_up(relay)
    assert relay.control.cursor()[1] >= max(visible)
    env.assert_equal(journal_only=True)  # the late event is counted
    assert env.sums()["placed"] == 3


# ------------------------------------------------------------------ deliveries


def _fulfil(env: RelayEnv, n: int = 16) -> None:
    """Orders placed, paid, shipped, delivered and received through the trading service, in every mix:
    prepaid (one or two shops), cash on delivery collected or failed, some left shipped or unshipped,
    some received by the buyer and the rest by the auto-receive job."""
    svc = env.service
    for i in range(n):
        if i % 4 == 3:
            oid = env.place([("C1", 1 + i % 3)], tx_type="cod", channel="web")
        else:
            lines = [("A3", 1), ("B1", 1)] if i % 8 == 0 else [("A3", 1 + i % 2)]
            oid = env.place(lines, pay=True)
        if i % 7 == 6:
            continue  # never shipped
        for j, sub in enumerate(env.sub_orders(oid)):
            svc.ship(sub, ("SF", "YTO", "ZTO")[(i + j) % 3], f"T-{i}-{j}")
            env.clock.advance(seconds=0.3)
            if i % 5 == 4:
                continue  # still on its way
            collected = i % 8 != 7  # one COD in two fails at the door
            svc.deliver(sub, collected=collected) if i % 4 == 3 else svc.deliver(sub)
            if i % 3 == 0 and collected:
                svc.receive(sub)
        env.clock.advance(seconds=0.4)
    env.clock.advance(days=8)
    svc.auto_receive()


def test_delivery_sums_equal_the_db(env):
    _fulfil(env)
    truth = env.delivery_truth()
    assert min(truth.values()) > 0, truth  # every step happened
    run_until_caught_up(env.relay())
    env.assert_deliveries_equal()
    env.assert_equal()
    assert env.delivery_sums()["auto_received"] > 0


def test_relay_killed_mid_batch_counts_no_delivery_twice(env):
    _fulfil(env)
    relay = env.relay("a", batch_size=9, ttl_s=5)
    real_write = env.store.write
    writes = {"n": 0}

    def killed_after_third_write(points):
        real_write(points)
        writes["n"] += 1
        if writes["n"] == 3:
            raise SystemExit("relay killed")

    env.store.write = killed_after_third_write
    with pytest.raises(SystemExit):
        relay.run_once()
    env.store.write = real_write
    env.clock.advance(seconds=6)
    run_until_caught_up(env.relay("b", batch_size=9))
    env.assert_deliveries_equal()


# ------------------------------------------------------------------ RabbitMQ


def _need_rabbitmq() -> None:
    need(port_open("127.0.0.1", 5672), "RabbitMQ is not listening on 127.0.0.1:5672")


def test_rabbitmq_delivers_every_event_once_per_id_and_survives_an_outage(tmp_path):
    _need_rabbitmq()
    import pika

    db = build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")
    env = RelayEnv(db, tmp_path)
    app = f"tgtest{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    ch.exchange_declare("tradeguard.events", exchange_type="topic", durable=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, "tradeguard.events", routing_key=f"{app}.#")

    _load(env, 6)
    # the broker is down (nothing listens there): the relay stops and keeps its cursor
    dead = RabbitMQBroker("amqp://guest:guest@127.0.0.1:1/%2F", app=app, connect_timeout_s=1)
    relay = env.relay(broker=dead)
    relay.app = app
    out = relay.run_once()
    assert out.error and "did not confirm" in out.error and "guest:guest" not in out.error
    assert out.cursor == 0 and env.sums().get("placed", 0) == 0
    _load(env, 6)
    # back up: it catches up, every event once, in order
    broker = RabbitMQBroker(AMQP_URL, app=app)
    relay.broker = broker
    run_until_caught_up(relay)
    journal = env.journal.tail(limit=100_000)
    broker.publish(journal[:5])  # a re-publish after a crash: duplicates carry the same message id
    got = []
    deadline = time.monotonic() + 10
    while len(got) < len(journal) + 5 and time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        got.append((method.routing_key, props, json.loads(body)))
    assert len(got) == len(journal) + 5
    unique: dict[str, dict] = {}
    for key, props, body in got:
        assert props.delivery_mode == 2 and key == f"{app}.{body['name']}"
        assert props.message_id == str(body["id"])
        unique.setdefault(props.message_id, body)
    assert [int(i) for i in unique] == [r.id for r in journal]  # every event, in journal order
    env.assert_equal()
    broker.close()
    conn.close()
    db.dispose()
