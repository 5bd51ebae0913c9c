"""Retention and 1-minute rollups of the embedded store, on a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from collectors.points import make_point
from collectors.query import Query
from collectors.registry import open_store

from .fakes import FakeClock

TAGS = {"app": "tg", "instance": "n1", "resource": "order.place"}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    s = open_store(f"sqlite:///{tmp_path}/m.db?raw_retention=1h&rollup_retention=2d", clock=clock)
    yield s
    s.close()


def three_minutes(clock, offset=0):
    t0 = clock.now()
    return [
        make_point(
            "resource_stats",
            {**TAGS, "resource": f"r{i % 2}"},
            {"pass": float(i % 11), "rt_max_ms": float(i)},
            t0 + timedelta(seconds=offset + i),
        )
        for i in range(180)
    ]


def q(clock, aggregate, minutes=3, bucket=60, group_by=()):
    t0 = clock.t0
    return Query(
        "resource_stats",
        ["pass", "rt_max_ms"],
        t0,
        t0 + timedelta(minutes=minutes),
        aggregate=aggregate,
        bucket_s=bucket,
        group_by=group_by,
    )


@pytest.mark.parametrize("aggregate", ["sum", "mean", "max", "min", "count", "last"])
def test_rollups_answer_like_raw_once_raw_expired(store, clock, aggregate):
    clock.t0 = clock.now()
    store.write(three_minutes(clock))
    before = store.query(q(clock, aggregate, group_by=["resource"]))
    clock.advance(180)
    report = store.maintain()
    assert report["rolled_minutes"] >= 3 and report["raw_deleted"] == 0
    clock.advance(3600)
    report = store.maintain()
    assert report["raw_deleted"] == 180  # raw gone, rollups answer
    after = store.query(q(clock, aggregate, group_by=["resource"]))
    assert after == before and len(after) == 6


def test_late_points_re_roll_their_minute(store, clock):
    clock.t0 = clock.now()
    store.write(three_minutes(clock))
    clock.advance(240)
    store.maintain()
    late = make_point(
        "resource_stats", TAGS | {"resource": "r0"}, {"pass": 1000.0}, clock.t0 + timedelta(seconds=30.5)
    )
    store.write([late])  # e.g. replayed from the outbox after an outage
    store.maintain()
    clock.advance(3700)
    store.maintain()
    rows = store.query(q(clock, "sum", minutes=1, bucket=None))
    assert rows[0].values["pass"] == sum(float(i % 11) for i in range(60)) + 1000.0


def test_percentiles_need_raw_data(store, clock):
    clock.t0 = clock.now()
    store.write(three_minutes(clock))
    assert store.query(q(clock, "p95"))
    clock.advance(3600 + 240)
    store.maintain()
    assert store.query(q(clock, "p95")) == []


def test_rollups_expire_after_rollup_retention(store, clock):
    clock.t0 = clock.now()
    store.write(three_minutes(clock))
    clock.advance(240)
    store.maintain()
    clock.advance(2 * 86400)
    report = store.maintain()
    assert report["rollups_deleted"] == 6
    assert store.query(q(clock, "sum")) == []


def test_maintenance_is_idempotent(store, clock):
    clock.t0 = clock.now()
    store.write(three_minutes(clock))
    clock.advance(240)
    first = store.maintain()
    again = store.maintain()
    assert first["rolled_minutes"] > 0 and again == {
        "rolled_minutes": 0,
        "raw_deleted": 0,
        "rollups_deleted": 0,
    }
