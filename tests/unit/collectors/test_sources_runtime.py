"""Sources (guardians snapshot, breaker listener, business events, host) and the Collection
runtime, on a fake clock with a fake store — no sleeping, no threads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import collectors.sources
from collectors.points import SCHEMA
from collectors.runtime import Collection
from collectors.sources import GuardianSource
from common.clock import FakeClock
from domain import events as ev
from guardians import BreakerStateChanged, Engine

from .fakes import FakeStore

START = 1_793_613_600.0  # 2026-11-02T10:00:00Z


def at(clock: FakeClock, delta_s: float = 0.0) -> datetime:
    return clock.now() + timedelta(seconds=delta_s)


def placed(t, shop="s1", amount=1999, discount=100, items=2, channel="web", tx="normal"):
    return ev.OrderPlaced(
        occurred_at=t,
        order_id="o1",
        sub_order_id="so1",
        shop_id=shop,
        buyer_id="b1",
        tx_type=tx,
        channel=channel,
        gross_cents=amount + discount,
        discount_cents=discount,
        amount_cents=amount,
        items=items,
    )


def paid(t, shop="s1", amount=1999):
    return ev.OrderPaid(
        occurred_at=t,
        order_id="o1",
        sub_order_id="so1",
        shop_id=shop,
        buyer_id="b1",
        tx_type="normal",
        channel="web",
        amount_cents=amount,
        payment_id="p1",
    )


def payment(t, ok=True, latency=12.0):
    common = dict(
        occurred_at=t,
        order_id="o1",
        payment_id="p1",
        buyer_id="b1",
        tx_type="normal",
        channel="web",
        amount_cents=500,
        latency_ms=latency,
    )
    return ev.PaymentSucceeded(**common) if ok else ev.PaymentFailed(**common, reason="declined")


def refund(t, done=False, amount=250):
    cls = ev.RefundCompleted if done else ev.RefundRequested
    return cls(
        occurred_at=t,
        refund_id="r1",
        order_id="o1",
        sub_order_id="so1",
        shop_id="s1",
        tx_type="normal",
        channel="web",
        amount_cents=amount,
        items=1,
    )


def test_guardian_source_reads_every_completed_second_once():
    clock = FakeClock(START)
    engine = Engine(clock)
    source = GuardianSource(engine, app="tg", instance="n1")
    for _ in range(3):
        with engine.entry("order.place"):
            clock.advance(0.004)
    clock.advance(1.0)
    with engine.entry("order.pay"):
        pass
    clock.advance(1.0)
    points = source.collect()
    by = {(p.tags["resource"], int(p.time.timestamp())): p for p in points}
    assert by[("order.place", int(START))].fields["pass"] == 3.0
    assert by[("order.place", int(START))].fields["success"] == 3.0
    assert ("order.pay", int(START) + 1) in by
    assert all(set(p.tags) == set(SCHEMA["resource_stats"].tags) for p in points)
    assert source.collect() == []  # nothing twice


def test_a_node_makes_no_business_figures():
    """orders/refunds/payments come from the journal relay only, never from a node's memory."""
    assert not hasattr(Collection, "on_event")
    assert not hasattr(collectors.sources, "BusinessAggregator")


def test_collection_pipeline_end_to_end_on_a_fake_clock(tmp_path):
    clock = FakeClock(START)
    engine = Engine(clock)
    store = FakeStore()
    c = Collection(
        store,
        tmp_path / "outbox.db",
        app="tg",
        instance="n1",
        engine=engine,
        clock=clock,
        host_probe=lambda: (12.5, 40.0, 0.3),
    )
    with engine.entry("order.place"):
        pass
    engine._emit(BreakerStateChanged("payment.charge", "closed", "open", clock.now(), None))
    clock.advance(1.5)
    assert c.tick() >= 2
    c.collect_host()
    result = c.flush()
    assert result.error is None and result.remaining == 0
    measurements = sorted({p.measurement for p in store.points})
    assert measurements == ["breaker_events", "collector", "host", "resource_stats"]
    health = c.health()
    assert health["status"] == "ok" and health["outbox"]["depth"] == 0
    assert health["last_flush_at"] == clock.now().isoformat()
    c.stop()


def test_health_shows_an_unreachable_store_and_keeps_points(tmp_path):
    clock = FakeClock(START)
    store = FakeStore()
    store.down = True
    c = Collection(store, tmp_path / "o.db", app="tg", instance="n1", clock=clock, collect_host_metrics=False)
    c.breakers.on_change(BreakerStateChanged("payment.charge", "closed", "open", clock.now(), None))
    clock.advance(2)
    c.tick()
    c.flush()
    h = c.health()
    assert h["status"] == "degraded" and h["store"]["reachable"] is False
    assert h["outbox"]["depth"] == 1 and "down" in h["last_flush_error"] and h["last_flush_at"] is None
    store.down = False
    c.flush()
    assert c.health()["status"] == "ok"
    c.stop()


def test_stop_enqueues_the_open_second_and_points_survive_for_next_start(tmp_path):
    clock = FakeClock(START)
    store = FakeStore()
    store.down = True
    c = Collection(store, tmp_path / "o.db", app="tg", instance="n1", clock=clock, collect_host_metrics=False)
    c.breakers.on_change(BreakerStateChanged("payment.charge", "closed", "open", clock.now(), None))
    c.stop()  # the current second is not complete, but stop() still saves it
    again = Collection(
        FakeStore(), tmp_path / "o.db", app="tg", instance="n1", clock=clock, collect_host_metrics=False
    )
    assert again.outbox.depth() == 1
    assert again.flush().sent == 1
    again.stop()


def test_maintain_runs_on_the_embedded_store(tmp_path):
    from collectors.registry import open_store

    clock = FakeClock(START)
    store = open_store(f"sqlite:///{tmp_path}/m.db", clock=clock)
    c = Collection(store, tmp_path / "o.db", clock=clock, collect_host_metrics=False)
    c.breakers.on_change(BreakerStateChanged("payment.charge", "closed", "open", clock.now(), None))
    clock.advance(120)
    c.tick()
    c.flush()
    assert c.maintain()["rolled_minutes"] >= 1
    c.stop()


@pytest.mark.parametrize("bad", [float("nan")])
def test_an_invalid_point_never_costs_the_others(tmp_path, bad):
    c = Collection(
        FakeStore(), tmp_path / "o.db", clock=FakeClock(START), collect_host_metrics=False, host_probe=None
    )
    from collectors.query import Point

    good = Point("host", {"app": "a", "instance": "i"}, {"cpu": 1.0}, datetime(2026, 1, 1, tzinfo=UTC))
    bad_point = Point("host", {"app": "a", "instance": "i"}, {"cpu": bad}, datetime(2026, 1, 1, tzinfo=UTC))
    assert c._put([good, bad_point]) == 1
    c.stop()
