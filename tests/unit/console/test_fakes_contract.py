"""The console's fakes keep the contract of the real adapters they stand in for: the same calls give
the same types, shapes and errors on ``FakeRuleStore`` and ``guardians.store.RuleStore``, on
``FakeAlerts`` and ``alerts.service.AlertService`` (both real ones on SQLite in tmp_path)."""

from __future__ import annotations

import pytest

from alerts.errors import AlertConfigError, NotFound
from alerts.service import AlertService
from alerts.store import AlertStore
from guardians.errors import RuleValidationError
from guardians.store import RuleStore, RuleVersion, VersionNotFound

from .fakes import FakeAlerts, FakeRuleStore


@pytest.fixture(params=["fake", "real"])
def rule_store(request, tmp_path):
    if request.param == "fake":
        yield FakeRuleStore()
        return
    store = RuleStore(f"sqlite:///{tmp_path / 'control.db'}")
    yield store
    store.close()


@pytest.fixture(params=["fake", "real"])
def alert_service(request, tmp_path):
    if request.param == "fake":
        yield FakeAlerts()
        return
    store = AlertStore(f"sqlite:///{tmp_path / 'control.db'}")
    yield AlertService(store)
    store.close()


def test_rule_store_versions_rollback_and_errors(rule_store):
    assert rule_store.current("shop") is None
    doc = {"flow": [{"resource": "order.place", "threshold": 50}]}
    assert rule_store.apply("shop", doc, "ann", "baseline") == 1
    assert rule_store.apply("shop", doc, "ann", "again") == 1  # identical: no new version
    assert (
        rule_store.apply("shop", {"flow": [{"resource": "order.place", "threshold": 5}]}, "bob", "sale") == 2
    )
    assert rule_store.rollback("shop", 1, "carol", "over") == 3
    current = rule_store.current("shop")
    assert isinstance(current, RuleVersion)
    assert (current.version, current.created_by, current.why, current.restored_from) == (
        3,
        "carol",
        "over",
        1,
    )
    assert current.document["flow"][0]["threshold"] == 50
    assert current.document["flow"][0]["grade"] == "qps"  # canonical: defaults filled in
    assert [v.version for v in rule_store.history("shop")] == [3, 2, 1]
    assert rule_store.history("shop")[1].diff["flow"]["added"][0]["threshold"] == 5
    with pytest.raises(VersionNotFound):
        rule_store.version("shop", 9)
    with pytest.raises(RuleValidationError) as exc:
        rule_store.apply("shop", {"flow": [{"resource": "order.place", "threshold": -1}]}, "ann", "x")
    assert exc.value.errors[0][0] == "flow[0].threshold"
    with pytest.raises(ValueError, match="why"):
        rule_store.apply("shop", {"flow": [{"resource": "a", "threshold": 1}]}, "ann", " ")


def test_alert_service_errors_and_silence_shape(alert_service):
    with pytest.raises(NotFound):
        alert_service.acknowledge(404, "olivia")
    with pytest.raises(NotFound):
        alert_service.timeline(404)
    with pytest.raises(AlertConfigError) as exc:
        alert_service.create_silence(["alertname=X"], created_by="olivia", comment="", duration="1h")
    assert exc.value.errors == [("comment", "required: say why this is silenced")]
    with pytest.raises(AlertConfigError) as exc:
        alert_service.create_silence(["alertname=X"], created_by=" ", comment="why", duration="1h")
    assert exc.value.errors[0][0] == "created_by"
    with pytest.raises(ValueError, match="label=value"):
        alert_service.create_silence(["nonsense"], created_by="olivia", comment="why", duration="1h")
    s = alert_service.create_silence(["alertname=X"], created_by="olivia", comment="why", duration="1h")
    assert set(s) == {
        "id",
        "matchers",
        "starts_at",
        "ends_at",
        "created_by",
        "comment",
        "expired_by",
        "status",
    }
    assert (s["matchers"], s["status"]) == (["alertname=X"], "active")
    assert [x["id"] for x in alert_service.silences()] == [s["id"]]
    assert alert_service.expire_silence(s["id"], "olivia")["status"] == "expired"
    assert alert_service.silences() == []
    with pytest.raises(NotFound):
        alert_service.expire_silence(404, "olivia")
    assert alert_service.list_alerts(("firing", "pending")) == []
