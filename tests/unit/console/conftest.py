from __future__ import annotations

import pytest

from collectors.registry import open_store
from console.services import ConsoleServices

from .fakes import FakeAlerts, FakeChaos, FakeClock, FakeFleet, FakeRuleStore


class CountingStore:
    """Wraps a metric store and counts queries (each refresh's query budget is asserted)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.queries = 0

    def write(self, points) -> None:
        self.inner.write(points)

    def query(self, query):
        self.queries += 1
        return self.inner.query(query)

    def health(self) -> dict:
        return self.inner.health()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def metrics(tmp_path):
    store = CountingStore(open_store(f"sqlite:///{tmp_path / 'metrics.db'}"))
    yield store
    store.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def svc(metrics, clock):
    return ConsoleServices(
        app="shop",
        metrics=metrics,
        rules=FakeRuleStore(),
        fleet=FakeFleet(),
        chaos=FakeChaos(),
        alerts=FakeAlerts(),
        clock=clock,
    )
