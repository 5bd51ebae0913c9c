"""RefusalSource: per-second counts in memory, each completed second drained once as a ``refusals`` point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.errors import PointError
from collectors.points import make_point
from collectors.sources import RefusalSource

T0 = datetime(2026, 11, 11, 7, 0, 0, 200000, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at


def test_completed_seconds_are_drained_once_and_the_running_one_waits():
    clock = Clock()
    src = RefusalSource(app="shop", instance="n1", clock=clock)
    for _ in range(3):
        src.record("order.place", "out_of_stock")
    src.record("order.place", "limit")
    assert src.drain() == []  # the second is still running: a partial count would be overwritten later
    clock.at = T0 + timedelta(seconds=0.5)
    src.record("order.place", "out_of_stock")  # the same second
    clock.at = T0 + timedelta(seconds=1)
    src.record("order.place", "out_of_stock")  # the next second
    points = src.drain()
    got = {(p.tags["reason"], p.time): p.fields["count"] for p in points}
    second = datetime(2026, 11, 11, 7, 0, 0, tzinfo=UTC)
    assert got == {("out_of_stock", second): 4.0, ("limit", second): 1.0}
    assert all(p.tags == {"app": "shop", "instance": "n1", "resource": "order.place",
                          "reason": p.tags["reason"]} for p in points)
    assert src.drain() == []  # nothing twice
    final = src.drain(final=True)  # at stop, the running second too
    assert [(p.tags["reason"], p.fields["count"], p.time) for p in final] == [
        ("out_of_stock", 1.0, second + timedelta(seconds=1))
    ]


def test_the_refusals_measurement_requires_its_instance_and_reason():
    at = datetime(2026, 11, 11, tzinfo=UTC)
    with pytest.raises(PointError, match="instance"):
        make_point("refusals", {"app": "a", "resource": "order.place", "reason": "limit"}, {"count": 1.0}, at)
    with pytest.raises(PointError, match="count"):
        make_point("refusals", {"app": "a", "instance": "n", "resource": "r", "reason": "limit"},
                   {"placed": 1.0}, at)
