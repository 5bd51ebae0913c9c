"""The shipped default rules during realistic incidents, on a fake clock: one alert per breaker
incident (acknowledgement kept), cause inhibits its symptoms, planned surges and outbox jitter do
not page while real faults still fire in the same time."""

from __future__ import annotations

import random
from datetime import timedelta
from types import SimpleNamespace

import pytest

from alerts.engine import AlertEngine, ensure_default_rules
from alerts.service import AlertService
from alerts.store import AlertStore
from tests.unit.alerts.fakes import FakeClock, FakeMetricStore

NODE = {"app": "shop", "instance": "n1"}
STATE = {"closed": 0, "open": 1, "half_open": 2}


@pytest.fixture
def env(tmp_path):
    clock = FakeClock()
    metrics = FakeMetricStore()
    store = AlertStore(f"sqlite:///{tmp_path}/control.db")
    ensure_default_rules(store, clock.now())
    engine = AlertEngine(store, metrics, clock=clock)
    service = AlertService(store, clock=clock)
    yield SimpleNamespace(clock=clock, metrics=metrics, store=store, engine=engine, service=service)
    store.close()


def breaker(env, previous: str, state: str, resource: str = "payment.charge") -> None:
    """What a node does on a transition: the event in-process, the point to the metric store."""
    env.metrics.add(
        "breaker_events",
        {**NODE, "resource": resource},
        {"state": STATE[state], "previous": STATE[previous]},
        env.clock.now(),
    )
    event = SimpleNamespace(resource=resource, previous=previous, state=state, at=env.clock.now(), rule=None)
    env.engine.on_breaker_event(event, NODE)


def run_for(env, seconds: int, each_second=None) -> None:
    """Advance second by second: the worker polls breakers every 2 s and runs a cycle every 10 s."""
    for _ in range(seconds):
        env.clock.advance(1)
        if each_second is not None:
            each_second()
        t = int(env.clock.now().timestamp())
        if t % 2 == 0:
            env.engine.poll_breakers()
        if t % 10 == 0:
            env.engine.cycle()


def alerts_of(env, rule: str) -> list:
    return [a for a in env.store.alerts(None, limit=1000) if a.rule == rule]


def test_a_breaker_cycling_for_3_minutes_is_one_alert_and_keeps_its_acknowledgement(env):
    breaker(env, "closed", "open")
    [alert] = alerts_of(env, "BreakerOpen")
    assert alert.state == "firing"
    env.service.acknowledge(alert.id, "olivia", "on it")
    # retry timeout 10 s: half-open, the probe fails 2 s later, open again ... for 3 minutes
    for _ in range(15):
        run_for(env, 10)
        breaker(env, "open", "half_open")
        run_for(env, 2)
        breaker(env, "half_open", "open")
    assert env.clock.now() - alert.active_since >= timedelta(minutes=3)
    [same] = alerts_of(env, "BreakerOpen")
    assert (same.id, same.state, same.acknowledged_by) == (alert.id, "firing", "olivia")
    kinds = [e["kind"] for e in env.store.events(alert.id)]
    assert "resolved" not in kinds
    reasons = {n["reason"] for n in env.store.notifications(alert_id=alert.id)}
    assert "resolved" not in reasons
    # the probe succeeds: the breaker closes; the alert resolves once, a minute later
    run_for(env, 10)
    breaker(env, "open", "half_open")
    run_for(env, 1)
    breaker(env, "half_open", "closed")
    run_for(env, 50)
    assert alerts_of(env, "BreakerOpen")[0].state == "firing"
    run_for(env, 20)
    [done] = alerts_of(env, "BreakerOpen")
    assert done.id == alert.id and done.state == "resolved"
    assert [e["kind"] for e in env.store.events(alert.id)].count("resolved") == 1


def payments(env, success: int, failure: int) -> None:
    env.metrics.add(
        "payments", NODE, {"success": success, "failure": failure}, env.clock.now() - timedelta(seconds=1)
    )


def stats(env, resource: str, passed: int, **blocks: int) -> None:
    fields = {"pass": passed, "block_flow": 0, "block_breaker": 0, "block_system": 0, "block_param": 0}
    fields.update(blocks)
    env.metrics.add("resource_stats", {**NODE, "resource": resource}, fields, env.clock.now())


def test_payment_success_low_inhibits_breaker_and_blocked_share_on_payment_charge(env):
    def fault() -> None:
        payments(env, success=5, failure=15)
        stats(env, "payment.charge", passed=4, block_breaker=16)
        stats(env, "inventory.reserve", passed=4, block_breaker=16)

    breaker(env, "closed", "open")
    breaker(env, "closed", "open", resource="inventory.reserve")
    run_for(env, 150, fault)
    listed = {(a["rule"], a["labels"].get("resource")): a for a in env.service.list_alerts(("firing",))}
    assert not listed[("PaymentSuccessRateLow", None)]["inhibited"]
    assert listed[("BreakerOpen", "payment.charge")]["inhibited"]
    assert listed[("BlockedShareHigh", "payment.charge")]["inhibited"]
    # symptoms of another resource are not the payment gateway's: they still page
    assert not listed[("BreakerOpen", "inventory.reserve")]["inhibited"]
    assert not listed[("BlockedShareHigh", "inventory.reserve")]["inhibited"]


def test_a_planned_surge_shed_by_flow_rules_does_not_page_but_breaker_blocks_do(env):
    run_for(env, 180, lambda: stats(env, "order.place", passed=40, block_flow=50, block_param=10))
    assert alerts_of(env, "BlockedShareHigh") == []  # not even pending
    run_for(env, 60, lambda: stats(env, "order.place", passed=100))  # the sale calms down
    start = env.clock.now()
    run_for(env, 90, lambda: stats(env, "order.place", passed=40, block_flow=20, block_breaker=40))
    [a] = alerts_of(env, "BlockedShareHigh")
    assert a.state == "firing"
    # as fast as the rule that counted every block: the 1-minute share passes 20 % after ~30 s of
    # 40 % breaker blocks, then `for` 30 s, seen by the next 10 s cycle
    assert a.fired_at - start <= timedelta(seconds=75)


def outbox(env, depth: float) -> None:
    env.metrics.add(
        "collector", NODE, {"outbox_depth": depth, "dropped": 0, "quarantined": 0}, env.clock.now()
    )


def test_outbox_jitter_never_goes_pending_and_a_dead_store_still_fires_in_time(env):
    rng = random.Random(7)
    seconds = 0

    def healthy() -> None:
        nonlocal seconds
        seconds += 1
        if seconds % 10 == 0:  # the collector's host interval: a depth sample every 10 s
            outbox(env, float(rng.randint(0, 30)))  # up to a flush interval of points waiting

    run_for(env, 11 * 60, healthy)
    assert alerts_of(env, "OutboxBacklogGrowing") == []
    depth = 0.0
    start = env.clock.now()

    def store_down() -> None:
        nonlocal depth, seconds
        seconds += 1
        depth += 5  # every point the node makes stays in the outbox (5 a second)
        if seconds % 10 == 0:
            outbox(env, depth)

    run_for(env, 200, store_down)
    [a] = alerts_of(env, "OutboxBacklogGrowing")
    assert a.state == "firing"
    assert a.fired_at - start <= timedelta(minutes=3)
