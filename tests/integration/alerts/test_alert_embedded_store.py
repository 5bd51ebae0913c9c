"""The shipped default rules evaluated over the real embedded metric store (collectors.registry)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.engine import AlertEngine, ensure_default_rules
from alerts.store import AlertStore
from collectors.points import make_point
from collectors.registry import open_store
from tests.unit.alerts.fakes import FakeClock

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path):
    clock = FakeClock()
    metrics = open_store(f"sqlite:///{tmp_path}/metrics.db", clock=clock)
    store = AlertStore(f"sqlite:///{tmp_path}/control.db")
    engine = AlertEngine(store, metrics, clock=clock)
    ensure_default_rules(store, clock.now())
    yield clock, metrics, store, engine
    metrics.close()
    store.close()


def second(clock, metrics, *, success, failure, rt_ms=20.0, passed=100, blocked=0, breaker=None, depth=0.0):
    t = clock.now() - timedelta(seconds=1)
    tags = {"app": "shop", "instance": "n1"}
    points = [
        make_point("payments", tags, {"success": success, "failure": failure, "latency_ms": 30}, t),
        make_point(
            "resource_stats",
            {**tags, "resource": "order.place"},
            {
                "pass": passed,
                "block_flow": 0,
                "block_breaker": blocked,  # flow blocks are by design and do not page
                "block_system": 0,
                "block_param": 0,
                "success": passed,
                "error": 0,
                "rt_avg_ms": rt_ms,
                "rt_max_ms": rt_ms * 2,
                "concurrency": 3,
            },
            t,
        ),
        make_point("collector", tags, {"outbox_depth": depth, "dropped": 0, "quarantined": 0}, t),
    ]
    if breaker is not None:
        points.append(
            make_point(
                "breaker_events",
                {**tags, "resource": "payment.charge"},
                {"state": breaker[1], "previous": breaker[0]},
                t,
            )
        )
    metrics.write(points)


def firing(store):
    return sorted(a.rule for a in store.open_alerts() if a.state == "firing")


def test_default_rules_fire_and_resolve_over_the_embedded_store(env):
    clock, metrics, store, engine = env
    for _ in range(30):  # healthy traffic
        clock.advance(1)
        second(clock, metrics, success=20, failure=0)
    out = engine.cycle()
    assert out["evaluate"]["errors"] == {} and firing(store) == []
    # a fault: half the charges fail, order.place slows down, a third is blocked, the breaker opens,
    # the outbox backs up
    for i in range(130):
        clock.advance(1)
        second(
            clock,
            metrics,
            success=10,
            failure=10,
            rt_ms=800,
            passed=60,
            blocked=40,
            breaker=(0, 1) if i == 0 else None,
            depth=100.0 + 50 * i,
        )
        if i % 10 == 9:
            engine.cycle()
    assert firing(store) == [
        "BlockedShareHigh",
        "BreakerOpen",
        "OrderPlaceLatencyHigh",
        "OutboxBacklogGrowing",
        "PaymentSuccessRateLow",
    ]
    pay = next(a for a in store.open_alerts() if a.rule == "PaymentSuccessRateLow")
    assert pay.value == pytest.approx(0.5) and pay.labels["app"] == "shop"
    lat = next(a for a in store.open_alerts() if a.rule == "OrderPlaceLatencyHigh")
    assert lat.labels["resource"] == "order.place" and lat.value == pytest.approx(800)
    # recovery
    for i in range(80):
        clock.advance(1)
        second(clock, metrics, success=20, failure=0, breaker=(1, 0) if i == 0 else None, depth=10.0)
        if i % 10 == 9:
            engine.cycle()
    assert firing(store) == []


def test_batched_queries_over_the_embedded_store(env):
    clock, metrics, store, engine = env
    store.replace_rules(
        [
            {
                "name": f"Lat-{r}",
                "query": {
                    "measurement": "resource_stats",
                    "field": "rt_avg_ms",
                    "aggregate": "p99",
                    "window": "1m",
                    "where": {"resource": r},
                    "group_by": ["instance"],
                },
                "op": ">",
                "threshold": 500,
                "for": "0s",
            }
            for r in ("order.place", "order.pay", "order.get")
        ],
        by="t",
        now=clock.now(),
        prune=True,
    )
    clock.advance(5)
    t = clock.now() - timedelta(seconds=1)
    metrics.write(
        [
            make_point("resource_stats", {"app": "a", "instance": "n1", "resource": r}, {"rt_avg_ms": v}, t)
            for r, v in (("order.place", 900.0), ("order.pay", 100.0), ("order.get", 700.0))
        ]
    )
    report = engine.evaluate()
    assert report.queries == 1
    assert sorted(a.rule for a in store.open_alerts()) == ["Lat-order.get", "Lat-order.place"]
