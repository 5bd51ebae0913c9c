"""Fakes implementing the collectors' ports, for unit tests."""

from __future__ import annotations

from datetime import UTC, datetime

import common.clock
from collectors.errors import StoreRejected, StoreUnavailable
from tests.unit.alerts.fakes import FakeMetricStore


class FakeClock(common.clock.FakeClock):
    """``common.clock.FakeClock`` starting on the collectors tests' day."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start or datetime(2026, 11, 2, 10, 0, tzinfo=UTC))


class FakeStore(FakeMetricStore):
    """The contract-tested in-memory metric store (``tests.unit.alerts.fakes.FakeMetricStore``: a
    point of the same series and timestamp replaces the fields it carries, real queries) with the
    failures the outbox must survive: the store down, a batch rejected as malformed."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.reject_if = None  # callable(point) -> bool: reject the whole batch as malformed
        self.writes = 0

    def write(self, points) -> None:
        self.writes += 1
        if self.down:
            raise StoreUnavailable("fake store is down")
        if self.reject_if and any(self.reject_if(p) for p in points):
            raise StoreRejected("HTTP 400: bad point in batch")
        super().write(points)

    def health(self) -> dict:
        return {"kind": self.kind, "reachable": not self.down, "error": "down" if self.down else None}
