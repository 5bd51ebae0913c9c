"""The console's fakes keep the contract of the real adapters they stand in for: the same calls give
the same types, shapes and errors on ``FakeRuleStore`` and ``guardians.store.RuleStore``, on
``FakeAlerts`` and ``alerts.service.AlertService`` (both real ones on SQLite in tmp_path)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.errors import AlertConfigError, InvalidAction, NotFound
from alerts.model import fingerprint
from alerts.service import AlertService
from alerts.store import AlertRecord, AlertStore
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


@pytest.fixture(params=["fake", "real"])
def alerts_with(request, tmp_path):
    """(the service, ``add(state) -> alert id``): one alert of rule PaymentSuccessLow in ``state``."""
    if request.param == "fake":
        fake = FakeAlerts()
        yield fake, lambda state: fake.add(len(fake.alerts) + 1, state, "PaymentSuccessLow")["id"]
        return
    store = AlertStore(f"sqlite:///{tmp_path / 'control.db'}")
    service = AlertService(store)

    def add(state: str) -> int:
        labels = {"alertname": "PaymentSuccessLow", "instance": "n1"}
        now = datetime.now(UTC)
        rec = AlertRecord(id=0, fingerprint=fingerprint(labels), rule="PaymentSuccessLow", labels=labels,
                          annotations={"summary": "PaymentSuccessLow summary"}, severity="critical",
                          state=state, active_since=now, value=0.5,
                          fired_at=now if state == "firing" else None, last_true_at=now)
        return store.insert_alert(rec).id

    yield service, add
    store.close()


def test_alert_dicts_and_action_errors_agree(alerts_with):
    svc, add = alerts_with
    firing, pending = add("firing"), add("pending")
    alert = svc.get_alert(firing)
    assert (alert["id"], alert["state"], alert["rule"], alert["acknowledged"]) == (
        firing, "firing", "PaymentSuccessLow", False)
    assert set(alert) >= {"id", "fingerprint", "rule", "labels", "annotations", "severity", "state", "value",
                          "active_since", "fired_at", "resolved_at", "acknowledged_by", "escalation_step",
                          "acknowledged", "silenced_by", "inhibited", "summary"}
    for call in (lambda: svc.get_alert(404), lambda: svc.escalate(404, "olivia"),
                 lambda: svc.silence_alert(404, created_by="olivia", comment="c", duration="1h")):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(InvalidAction):  # the alert changed since the page showed it
        svc.acknowledge(firing, "olivia", expected_state="pending")
    with pytest.raises(InvalidAction):
        svc.escalate(pending, "olivia")  # only a firing alert escalates
    with pytest.raises(AlertConfigError) as exc:
        svc.escalate(firing, " ")
    assert exc.value.errors[0][0] == "by"
    silence = svc.silence_alert(firing, created_by="olivia", comment="known", duration="1h",
                                expected_state="firing")
    assert sorted(silence["matchers"]) == ["alertname=PaymentSuccessLow", "instance=n1"]
    assert silence["status"] == "active"
    assert [e["kind"] for e in svc.timeline(firing)["events"]][-1] == "silenced"
    assert svc.acknowledge(firing, "olivia")["acknowledged_by"] == "olivia"
    assert svc.resolve(firing, "olivia")["state"] == "resolved"
    with pytest.raises(InvalidAction):
        svc.resolve(firing, "olivia")  # already resolved


def test_on_call_and_rules_agree(alerts_with):
    svc, _ = alerts_with
    for who, duration, field in ((" ", "1h", "who"), ("dora", "soon", "duration")):
        with pytest.raises(AlertConfigError) as exc:
            svc.set_on_call(who, by="olivia", duration=duration)
        assert exc.value.errors[0][0] == field
    entry = svc.set_on_call("dora", by="olivia", duration="2h", rotation="weekend")
    assert set(entry) == {"rotation", "name", "email", "override", "shift_start", "shift_end"}
    assert (entry["rotation"], entry["name"], entry["override"]) == ("weekend", "dora", True)
    assert entry in svc.on_call_now()
    assert svc.rules() == []  # no alert rules applied yet: nothing listed
