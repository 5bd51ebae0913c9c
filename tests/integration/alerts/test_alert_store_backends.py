"""The alerting tables on every control-DB backend: SQLite file and a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.engine import AlertEngine
from alerts.service import AlertService
from alerts.store import AlertStore, metadata
from tests.services import need_postgres
from tests.unit.alerts.fakes import T0, FakeClock, FakeMetricStore

pytestmark = pytest.mark.integration

DOC = """
rules:
  - name: ErrorsHigh
    query: {measurement: resource_stats, field: error, aggregate: sum, window: 1m, group_by: [instance]}
    op: ">"
    threshold: 10
    for: 10s
route: {receiver: default, group_by: [alertname], group_wait: 0s, group_interval: 1m, repeat_interval: 1h}
rotations:
  - {name: primary, start: "2026-11-23T09:00:00Z", members: [{name: alice, email: a@x}]}
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = AlertStore(f"sqlite:///{tmp_path}/control.db")
    else:
        url = need_postgres()
        s = AlertStore(url)
        metadata.drop_all(s.engine)
        metadata.create_all(s.engine)
    yield s
    if request.param == "postgresql":
        metadata.drop_all(s.engine)
    s.close()


def test_full_alert_life_on_the_backend(store):
    clock = FakeClock()
    metrics = FakeMetricStore()
    engine = AlertEngine(store, metrics, clock=clock)
    svc = AlertService(store, clock=clock)
    svc.apply(DOC, by="alice")
    for step in range(3):
        metrics.add(
            "resource_stats",
            {"app": "a", "instance": "n1", "resource": "r"},
            {"error": 50},
            clock.now() - timedelta(seconds=1),
        )
        engine.cycle()
        if step < 2:
            clock.advance(5)
    [a] = svc.list_alerts(("firing",))
    assert a["fired_at"] == (T0 + timedelta(seconds=10)).isoformat()
    assert a["active_since"] == T0.isoformat()
    engine.deliver()
    assert [n["status"] for n in svc.notifications()] == ["sent"]
    svc.acknowledge(a["id"], by="alice", comment="on it")
    s = svc.create_silence(["instance=n1"], created_by="alice", comment="maintenance", duration="30m")
    assert svc.list_alerts(("firing",))[0]["silenced_by"] == [s["id"]]
    events = [e["kind"] for e in svc.timeline(a["id"])["events"]]
    assert events == ["pending", "firing", "notified", "acknowledged"]
    assert svc.on_call_now()[0]["name"] == "alice"
    svc.resolve(a["id"], by="alice")
    assert [h["id"] for h in svc.history()] == [a["id"]]
    assert svc.history()[0]["resolved_by"] == "alice"
