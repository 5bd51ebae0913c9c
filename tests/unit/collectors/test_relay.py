"""The journal relay on SQLite: sums equal the books, idempotent re-emission, the lease, the broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from collectors.broker import BrokerUnavailable, InProcessBroker
from collectors.query import Query
from collectors.relay import business_points, second_runs
from domain.adapters import orm
from domain.adapters.journal import JournalRow
from domain.adapters.sku_sales import FencedOut, SkuSalesModel
from domain.adapters.unit_of_work import build_trading_db
from tests.unit.collectors.relay_env import RelayEnv, crash_cursor_save_once


@pytest.fixture
def env(tmp_path):
    db = build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")
    e = RelayEnv(db, tmp_path)
    yield e
    db.dispose()


def _business(env: RelayEnv) -> None:
    a = env.place([("A1", 1), ("B1", 1)], pay=True)  # two shops: two sub-orders
    env.clock.advance(seconds=1.3)
    env.place([("A3", 2)], pay=True, channel="web")
    env.place([("A1", 1)])  # placed, never paid
    env.clock.advance(seconds=2)
    env.refund(a, "A1")


def test_relay_sums_equal_the_trading_db(env):
    _business(env)
    relay = env.relay()
    result = relay.run_once()
    assert result.leader and result.error is None and result.events > 0
    env.assert_equal()
    # orders carry no node tag: one writer
    rows = env.store.query(Query("orders", ["placed"], env.clock.now() - timedelta(hours=1),
                                 env.clock.now() + timedelta(hours=1), group_by=["shop", "channel"]))
    assert {tuple(sorted(r.tags)) for r in rows} == {("channel", "shop")}
    # the relay measurement: caught up, cursor = last journal id
    last_id = env.journal.tail(last=1)[0].id
    assert result.cursor == last_id and result.lag_s == 0.0
    now = env.clock.now()
    rel = env.store.query(Query("relay", ["relay_cursor", "relay_lag_s"], now - timedelta(minutes=1),
                                now + timedelta(minutes=1), aggregate="last"))
    assert rel[0].values["relay_cursor"] == last_id and rel[0].values["relay_lag_s"] == 0.0


def test_business_points_are_full_sums_per_series_and_second(env):
    _business(env)
    rows = env.journal.read_after((0, 0), 10_000)
    points = business_points(rows, app="tg")
    by = {(p.measurement, tuple(sorted(p.tags.items())), p.time): p.fields for p in points}
    assert len(by) == len(points)  # one point per series and second
    placed = sum(p.fields.get("placed", 0) for p in points if p.measurement == "orders")
    assert placed == env.truth()["placed"]
    assert all("instance" not in p.tags for p in points if p.measurement in ("orders", "refunds"))
    assert {p.tags["instance"] for p in points if p.measurement == "payments"} == {"all"}


def test_payments_take_the_node_from_the_payload_when_it_names_one():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [JournalRow(i, 0, "PaymentSucceeded", t, "o", {"latency_ms": 10.0 * i, "instance": f"n{i % 2}"})
            for i in range(1, 5)]
    pts = {p.tags["instance"]: p.fields for p in business_points(rows, app="tg")}
    assert pts == {"n0": {"success": 2.0, "failure": 0.0, "latency_ms": 30.0},
                   "n1": {"success": 2.0, "failure": 0.0, "latency_ms": 20.0}}


def test_a_crash_after_the_store_write_re_emits_the_same_seconds_without_double_count(env):
    _business(env)
    relay = env.relay()
    crash_cursor_save_once(relay)
    first = relay.run_once()
    assert first.error and "killed" in first.error and first.cursor == 0
    assert env.sums()["placed"] == env.truth()["placed"]  # written once already
    # a fresh relay process (same holder after restart) re-reads from the durable cursor
    relay2 = env.relay("r1")
    again = relay2.run_once()
    assert again.error is None and again.events > 0
    env.assert_equal()


def test_an_event_committed_late_into_a_written_second_replaces_that_point(env):
    env.place([("A1", 1)], pay=True)
    relay = env.relay()
    relay.run_once()
    before = env.sums()
    # an event of the same second and series commits later (e.g. a node whose clock lags)
    last = env.journal.tail(name="OrderPlaced", last=1)[0]
    with env.db.engine.begin() as conn:
        conn.execute(insert(orm.domain_events).values(
            occurred_at=last.occurred_at, name="OrderPlaced", order_id="late",
            payload=json.dumps({**last.payload, "order_id": "late"})))
    relay.run_once()
    after = env.sums()
    assert after["placed"] == before["placed"] + 1  # the second's point now holds both, not just the late one
    assert after["gmv"] == before["gmv"] + last.payload["amount_cents"]


def test_replay_rebuilds_lost_points_idempotently(env, tmp_path):
    _business(env)
    relay = env.relay()
    relay.run_once()
    expected = env.sums()
    from collectors.registry import open_store

    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}", clock=env.clock)
    env.store = fresh
    relay.store = fresh
    start, end = env.clock.now() - timedelta(hours=1), env.clock.now() + timedelta(minutes=1)
    assert relay.replay(start, end) > 0
    relay.replay(start, end)  # twice: still the same sums
    assert env.sums() == expected


def test_second_runs_merge_close_seconds():
    assert second_runs([5, 1, 2, 40, 3, 45]) == [(1, 5), (40, 45)]
    assert second_runs([1, 100], max_gap=10) == [(1, 1), (100, 100)]


# ------------------------------------------------------------------ lease


def test_only_one_relay_leads_and_a_stolen_lease_stops_the_old_one_before_it_writes(env):
    env.place([("A1", 1)], pay=True)
    a = env.relay("a", ttl_s=5)
    b = env.relay("b", ttl_s=5)
    assert a.run_once().leader
    assert not b.run_once().leader  # a holds the lease
    env.place([("A3", 1)])

    # a reads its batch, then stalls past its TTL; b takes over (token 2) before a writes
    writes = []
    real_write = env.store.write
    env.store.write = lambda pts: (writes.append(len(pts)), real_write(pts))[1]
    real_read = a.journal.read_after

    class StallingJournal:
        def __getattr__(self, name):
            return getattr(env.journal, name)

        def read_after(self, position, limit=1000):
            rows = real_read(position, limit)
            if rows:
                env.clock.advance(seconds=6)
                assert b.control.acquire() == 2
            return rows

    a.journal = StallingJournal()
    cursor_before = a.control.cursor()
    out = a.run_once()
    assert not out.leader and "lease" in (out.error or "")
    assert writes == []  # a wrote no point after losing the lease
    assert a.control.cursor() == cursor_before
    a.journal = env.journal
    assert not a.run_once().leader  # and it stays out while b's lease is valid
    assert b.run_once().leader
    env.assert_equal()


def test_a_crashed_leader_is_replaced_after_its_ttl(env):
    env.place([("A1", 1)])
    a, b = env.relay("a", ttl_s=5), env.relay("b", ttl_s=5)
    assert a.run_once().leader
    env.place([("A3", 1)])
    assert not b.run_once().leader
    env.clock.advance(seconds=5.1)  # a was SIGKILLed: no renewal
    out = b.run_once()
    assert out.leader and b.control.token == 2
    env.assert_equal()


# ------------------------------------------------------------------ broker


def test_a_broker_outage_keeps_the_cursor_and_the_relay_catches_up(env):
    broker = InProcessBroker()
    seen: list[int] = []
    down = {"v": True}

    def consumer(event):
        if down["v"]:
            raise ConnectionError("broker down")
        seen.append(event.id)

    broker.subscribe(consumer)
    env.place([("A1", 1)], pay=True)
    relay = env.relay(broker=broker)
    out = relay.run_once()
    assert out.error and "broker down" in out.error and out.cursor == 0 and out.events == 0
    assert out.lag_s is not None
    env.clock.advance(seconds=40)
    assert relay.run_once().lag_s >= 40  # lag grows while the broker is down
    down["v"] = False
    env.place([("A3", 1)])
    out = relay.run_once()
    assert out.error is None
    ids = [r.id for r in env.journal.tail(limit=10_000)]
    assert seen == ids  # every event, once, in order
    env.assert_equal()


def test_in_process_broker_raises_when_a_subscriber_fails():
    b = InProcessBroker()
    b.subscribe(lambda e: 1 / 0)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(BrokerUnavailable, match="event 7"):
        b.publish([JournalRow(7, 0, "OrderPaid", t, "o", {})])


# ------------------------------------------------------------------ per-SKU read model


def test_sku_read_model_counts_each_event_once_and_ranks_skus(env):
    o = env.place([("A1", 2), ("A3", 3)], pay=True)
    env.place([("A3", 1)], pay=True)
    env.place([("A1", 1)])  # not paid: not revenue
    env.refund(o, "A3", 1)
    relay = env.relay()
    relay.run_once()
    model = SkuSalesModel(env.db.engine)
    start, end = env.clock.now() - timedelta(hours=2), env.clock.now() + timedelta(hours=1)
    top = model.top("s1", start, end, by="units")
    assert [r["sku"] for r in top] == ["A3", "A1"]
    a3 = top[0]
    assert a3["units"] == 4 and a3["refunded_units"] == 1 and a3["refunded_cents"] > 0
    with env.db.engine.connect() as conn:
        lines = conn.execute(orm.order_lines.select().where(orm.order_lines.c.sku == "A1")).all()
    paid_a1 = [li for li in lines if li.order_id == o]
    assert top[1]["revenue_cents"] == sum(li.amount_cents for li in paid_a1)
    # the same batch again (a relay killed after the read model commit, before its cursor save)
    rows = env.journal.read_after((0, 0), 10_000)
    assert model.apply(rows, fence=relay.control.token) == 0
    assert model.top("s1", start, end, by="units") == top
    # a relay with an older fencing token is refused
    with pytest.raises(FencedOut):
        model.apply(rows, fence=0)
    with pytest.raises(ValueError, match="by must be one of"):
        model.top("s1", start, end, by="nope")
