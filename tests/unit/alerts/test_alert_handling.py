"""Grouping timers, dedup, silences, inhibition, acknowledgement, escalation, rotation, retries."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from alerts.engine import AlertEngine
from alerts.errors import AlertConfigError, InvalidAction
from alerts.model import Member, Override, Rotation
from alerts.service import AlertService
from alerts.store import AlertStore
from tests.unit.alerts.fakes import T0, FakeClock, FakeMetricStore

DOC = """
rules:
  - name: ErrorsHigh
    query: {measurement: resource_stats, field: error, aggregate: sum, window: 1m,
            group_by: [app, instance, resource]}
    op: ">"
    threshold: 10
    for: 0s
    severity: warning
    annotations: {summary: "{resource} on {instance}: {value} errors"}
  - name: NodeHeartbeatMissing
    kind: heartbeat
    op: ">"
    threshold: 30
    for: 0s
    severity: critical
inhibit_rules:
  - source: ["alertname=NodeHeartbeatMissing"]
    target: ["instance=~.+", "alertname!=NodeHeartbeatMissing"]
    equal: [instance]
route:
  receiver: pager
  group_by: [alertname, app]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
channels:
  - {name: hook, kind: webhook, url: "http://127.0.0.1:9/hook"}
  - {name: mail, kind: email, smtp_url: "smtp://127.0.0.1:25", to: [team@example.com]}
escalation_policies:
  - name: pager
    steps:
      - channels: [hook]
      - {wait: 10m, channels: [mail], oncall: primary}
      - {wait: 15m, channels: [log]}
rotations:
  - name: primary
    start: 2026-11-23T09:00:00Z
    members:
      - {name: alice, email: alice@example.com}
      - {name: bob, email: bob@example.com}
    overrides:
      - {who: carol, start: 2026-11-24T00:00:00Z, end: 2026-11-24T12:00:00Z}
"""


class RecordingSender:
    def __init__(self, fail_times: int = 0) -> None:
        self.sent: list[tuple[dict, dict]] = []
        self.fail_times = fail_times

    def send(self, payload, extra) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("receiver down")
        self.sent.append((payload, dict(extra)))


class Nodes:
    def __init__(self) -> None:
        self.beats: dict = {}

    def last_heartbeats(self, now):
        return dict(self.beats)


@pytest.fixture
def env(tmp_path):
    clock = FakeClock()
    metrics = FakeMetricStore()
    store = AlertStore(f"sqlite:///{tmp_path}/control.db")
    hook, mail, logs = RecordingSender(), RecordingSender(), RecordingSender()
    nodes = Nodes()
    engine = AlertEngine(
        store, metrics, clock=clock, nodes=nodes, senders={"hook": hook, "mail": mail, "log": logs}
    )
    service = AlertService(store, clock=clock)
    service.apply(DOC, by="test")
    yield SimpleNamespace(
        clock=clock,
        metrics=metrics,
        store=store,
        engine=engine,
        service=service,
        hook=hook,
        mail=mail,
        logs=logs,
        nodes=nodes,
        failing={},
    )
    store.close()


def errors(env, n: int, instance: str = "n1", resource: str = "order.place", app: str = "shop") -> None:
    """From now on, this series reports ``n`` errors a second (until ``env.failing.clear()``)."""
    env.failing[(app, instance, resource)] = n


def tick(env, seconds: float = 0) -> None:
    """Advance the clock, write the failing series' last second, run a cycle and a delivery round."""
    env.clock.advance(seconds)
    for (app, instance, resource), n in env.failing.items():
        env.metrics.add(
            "resource_stats",
            {"app": app, "instance": instance, "resource": resource},
            {"error": n},
            env.clock.now() - timedelta(seconds=1),
        )
    env.engine.cycle()
    env.engine.deliver()


def test_group_wait_then_group_interval_then_repeat_then_resolved(env):
    errors(env, 50, instance="n1")
    tick(env)
    assert env.hook.sent == []  # group_wait 30 s
    errors(env, 50, instance="n2")  # joins the same group (alertname, app) before the first send
    tick(env, 29)
    assert env.hook.sent == []
    tick(env, 1)
    [(payload, _)] = env.hook.sent
    assert payload["version"] == "4" and payload["status"] == "firing" and payload["receiver"] == "pager"
    assert payload["groupLabels"] == {"alertname": "ErrorsHigh", "app": "shop"}
    assert {a["labels"]["instance"] for a in payload["alerts"]} == {"n1", "n2"}
    assert payload["commonLabels"]["alertname"] == "ErrorsHigh" and "instance" not in payload["commonLabels"]
    # unchanged group: deduplicated until repeat_interval
    for _ in range(5):
        errors(env, 50, "n1")
        errors(env, 50, "n2")
        tick(env, 50)
    assert len(env.hook.sent) == 1  # t = 280 s
    # a new alert in the group waits for group_interval (5 min after the last send)
    errors(env, 50, "n3")
    errors(env, 50, "n1")
    errors(env, 50, "n2")
    tick(env, 10)
    assert len(env.hook.sent) == 1  # t = 290 s: only 260 s since the first send
    errors(env, 50, "n3")
    errors(env, 50, "n1")
    errors(env, 50, "n2")
    tick(env, 40)  # t = 330 s: the 5 min group interval since the first send is over
    assert len(env.hook.sent) == 2
    assert len(env.hook.sent[-1][0]["alerts"]) == 3
    # repeat after an hour while still firing and unacknowledged
    for _ in range(13):
        for inst in ("n1", "n2", "n3"):
            errors(env, 50, inst)
        tick(env, 300)
    reasons = [n["reason"] for n in env.service.notifications() if n["channel"] == "hook"]
    assert "repeat" in reasons
    # everything recovers: one resolved notification, then the group is gone
    count = len(env.hook.sent)
    env.failing.clear()
    tick(env, 61)
    tick(env, 300)
    assert len(env.hook.sent) == count + 1
    last = env.hook.sent[-1][0]
    assert last["status"] == "resolved" and {a["status"] for a in last["alerts"]} == {"resolved"}
    assert all(a["endsAt"] != "0001-01-01T00:00:00Z" for a in last["alerts"])
    tick(env, 3600)
    assert len(env.hook.sent) == count + 1


def test_alert_resolved_before_group_wait_is_never_sent(env):
    errors(env, 50)
    tick(env)
    env.failing.clear()
    tick(env, 61)  # gone from the window → resolved
    tick(env, 60)
    assert env.hook.sent == []


def test_acknowledged_alert_gets_no_repeat_and_no_escalation(env):
    errors(env, 50)
    tick(env, 0)
    tick(env, 30)
    assert len(env.hook.sent) == 1
    [a] = env.service.list_alerts(("firing",))
    env.service.acknowledge(a["id"], by="alice")
    assert env.service.list_alerts(("firing",), acknowledged=True)[0]["acknowledged_by"] == "alice"
    for _ in range(30):
        errors(env, 50)
        tick(env, 300)
    assert len(env.hook.sent) == 1
    assert env.mail.sent == []
    assert env.service.unacknowledge(a["id"], by="alice")["acknowledged"] is False
    with pytest.raises(InvalidAction):
        env.service.unacknowledge(a["id"], by="alice")


def test_escalation_steps_and_on_call(env):
    errors(env, 50)
    tick(env)
    tick(env, 30)
    assert len(env.hook.sent) == 1 and env.mail.sent == []
    for _ in range(9):
        errors(env, 50)
        tick(env, 60)
    assert env.mail.sent == []  # 9.5 minutes after firing: still step 1
    errors(env, 50)
    tick(env, 31)  # 10 min after firing → step 2: mail to the on-call (alice, week 1)
    [(payload, extra)] = env.mail.sent
    assert payload["receiver"] == "pager/step2" and payload["oncall"] == "alice"
    assert extra["to"] == ["alice@example.com"]
    [a] = env.service.list_alerts(("firing",))
    assert a["escalation_step"] == 1
    kinds = [e["kind"] for e in env.service.timeline(a["id"])["events"]]
    assert kinds[:2] == ["firing", "notified"] and "escalated" in kinds
    for _ in range(14):
        errors(env, 50)
        tick(env, 60)
    assert env.logs.sent == []
    errors(env, 50)
    tick(env, 61)  # 15 min after step 2 → step 3
    assert len(env.logs.sent) == 1 and env.logs.sent[0][0]["receiver"] == "pager/step3"
    # no step 4
    for _ in range(20):
        errors(env, 50)
        tick(env, 60)
    assert len(env.logs.sent) == 1


def test_unacknowledge_restarts_escalation(env):
    errors(env, 50)
    tick(env)
    [a] = env.service.list_alerts(("firing",))
    env.service.acknowledge(a["id"], by="bob")
    for _ in range(20):
        errors(env, 50)
        tick(env, 60)
    assert env.mail.sent == []
    env.service.unacknowledge(a["id"], by="bob")
    for _ in range(9):
        errors(env, 50)
        tick(env, 60)
    assert env.mail.sent == []
    errors(env, 50)
    tick(env, 61)
    assert len(env.mail.sent) == 1
    resolved = env.service.resolve(a["id"], by="bob", comment="fixed the pool")
    assert resolved["state"] == "resolved" and resolved["resolved_by"] == "bob"
    with pytest.raises(InvalidAction):
        env.service.acknowledge(a["id"], by="bob")


def test_silence_mutes_matching_alerts_until_expired(env):
    s = env.service.create_silence(
        ["alertname=ErrorsHigh", "instance=n1"], created_by="carol", comment="deploying n1", duration="1h"
    )
    assert s["status"] == "active" and s["matchers"] == ["alertname=ErrorsHigh", "instance=n1"]
    errors(env, 50, "n1")
    tick(env)
    tick(env, 30)
    assert env.hook.sent == []
    [a] = env.service.list_alerts(("firing",))
    assert a["silenced_by"] == [s["id"]]
    errors(env, 50, "n1")
    errors(env, 50, "n2")  # not silenced
    tick(env, 30)
    tick(env, 30)
    assert [x["labels"]["instance"] for x in env.hook.sent[0][0]["alerts"]] == ["n2"]
    expired = env.service.expire_silence(s["id"], by="carol")
    assert expired["status"] == "expired" and expired["expired_by"] == "carol"
    assert env.service.silences() == [] and len(env.service.silences(include_expired=True)) == 1
    errors(env, 50, "n1")
    errors(env, 50, "n2")
    tick(env, 301)
    assert {x["labels"]["instance"] for x in env.hook.sent[-1][0]["alerts"]} == {"n1", "n2"}


def test_silence_validation_and_crud(env):
    with pytest.raises(AlertConfigError) as e:
        env.service.create_silence([], created_by="x", comment="c", duration="1h")
    assert e.value.errors[0][0] == "matchers"
    with pytest.raises(AlertConfigError) as e:
        env.service.create_silence(["a=b"], created_by="x", comment="", duration="1h")
    assert e.value.errors[0][0] == "comment"
    with pytest.raises(AlertConfigError) as e:
        env.service.create_silence(["a=b"], created_by="x", comment="c", duration="soon")
    assert e.value.errors[0][0] == "duration"
    with pytest.raises(ValueError):
        env.service.create_silence(["no matcher"], created_by="x", comment="c", duration="1h")
    s = env.service.create_silence(
        ["a=~b.*"],
        created_by="x",
        comment="c",
        starts_at=T0 + timedelta(hours=1),
        ends_at=T0 + timedelta(hours=2),
    )
    assert s["status"] == "pending"
    s = env.service.update_silence(s["id"], comment="changed", matchers=["a!=b"])
    assert s["comment"] == "changed" and s["matchers"] == ["a!=b"]
    env.clock.advance(3600 * 3)
    assert env.service.silences(include_expired=True)[0]["status"] == "expired"
    env.service.delete_silence(s["id"])
    assert env.service.silences(include_expired=True) == []


def test_node_down_inhibits_that_nodes_resource_alerts(env):
    env.nodes.beats = {"n1": env.clock.now(), "n2": env.clock.now()}
    env.clock.advance(40)
    env.nodes.beats["n2"] = env.clock.now()  # n1 silent for 40 s: down
    errors(env, 50, "n1")
    errors(env, 50, "n2")
    tick(env)
    tick(env, 30)
    names = sorted(
        (p["groupLabels"]["alertname"], tuple(a["labels"].get("instance") for a in p["alerts"]))
        for p, _ in env.hook.sent
    )
    assert names == [("ErrorsHigh", ("n2",)), ("NodeHeartbeatMissing", ("n1",))]
    inhibited = [a for a in env.service.list_alerts(("firing",)) if a["inhibited"]]
    assert [(a["rule"], a["labels"]["instance"]) for a in inhibited] == [("ErrorsHigh", "n1")]


def test_rotation_weekly_shifts_and_overrides():
    r = Rotation(
        "primary",
        (Member("alice"), Member("bob"), Member("dave")),
        start=T0,
        overrides=(Override("carol", T0 + timedelta(days=8), T0 + timedelta(days=8, hours=12)),),
    )
    assert r.on_call(T0 - timedelta(seconds=1)) is None
    assert r.on_call(T0).name == "alice"
    assert r.on_call(T0 + timedelta(days=6, hours=23)).name == "alice"
    assert r.on_call(T0 + timedelta(days=7)).name == "bob"
    assert r.on_call(T0 + timedelta(days=8, hours=1)).name == "carol"  # override
    assert r.on_call(T0 + timedelta(days=8, hours=12)).name == "bob"  # override over
    assert r.on_call(T0 + timedelta(days=14)).name == "dave"
    assert r.on_call(T0 + timedelta(days=21)).name == "alice"
    assert r.shift_bounds(T0 + timedelta(days=9)) == (T0 + timedelta(days=7), T0 + timedelta(days=14))


def test_on_call_now_from_the_service(env):
    [now] = env.service.on_call_now()
    assert now["rotation"] == "primary" and now["name"] == "alice" and not now["override"]
    [later] = env.service.on_call_now(T0 + timedelta(days=7))
    assert later["name"] == "bob" and later["email"] == "bob@example.com"
    [ov] = env.service.on_call_now(T0 + timedelta(hours=20))
    assert ov["name"] == "carol" and ov["override"]


def test_failed_delivery_is_retried_with_backoff_and_recorded(env):
    env.hook.fail_times = 2
    errors(env, 50)
    tick(env)
    tick(env, 30)  # attempt 1 fails
    assert env.hook.sent == []
    [n] = [x for x in env.service.notifications() if x["channel"] == "hook"]
    assert n["status"] == "pending" and n["attempts"] == 1 and "receiver down" in n["last_error"]
    env.clock.advance(1)
    env.engine.deliver()  # backoff 2 s: not yet
    assert env.store.deliveries(notification_id=n["id"])[0]["ok"] is False
    assert len(env.store.deliveries(notification_id=n["id"])) == 1
    env.clock.advance(1)
    env.engine.deliver()  # attempt 2 fails → next in 4 s
    env.clock.advance(3)
    env.engine.deliver()
    assert env.hook.sent == []
    env.clock.advance(1)
    env.engine.deliver()  # attempt 3 succeeds
    assert len(env.hook.sent) == 1
    attempts = env.service.deliveries(n["id"])
    assert [d["ok"] for d in reversed(attempts)] == [False, False, True]
    assert attempts[-1]["error"] == "ConnectionError: receiver down" and attempts[0]["channel"] == "hook"
    assert [x["status"] for x in env.service.notifications() if x["id"] == n["id"]] == ["sent"]


def test_a_channel_failing_for_good_stops_nothing_else(env):
    env.engine.deliverer.max_attempts = 2
    env.hook.fail_times = 100
    errors(env, 50)
    tick(env)
    tick(env, 30)
    env.clock.advance(5)
    env.engine.deliver()
    [n] = [x for x in env.service.notifications() if x["channel"] == "hook"]
    assert n["status"] == "failed" and n["attempts"] == 2
    # evaluation went on: a new alert still fires and is grouped
    errors(env, 50, "n9", app="other")
    tick(env)
    assert any(a["labels"]["app"] == "other" for a in env.service.list_alerts(("firing",)))


def test_unknown_channel_is_a_recorded_failure(env):
    env.service.apply({"escalation_policies": [{"name": "pager", "steps": [{"channels": ["nope"]}]}]}, by="t")
    errors(env, 50)
    tick(env)
    tick(env, 30)
    [n] = env.service.notifications()
    assert n["channel"] == "nope" and "not configured" in n["last_error"]


def test_service_rules_apply_validate_export(env):
    names = [r["name"] for r in env.service.rules()]
    assert names == ["ErrorsHigh", "NodeHeartbeatMissing"]
    assert env.service.validate(
        "rules: [{name: x, query: {measurement: m, field: f, aggregate: median}}]"
    ) == [
        {
            "field": "rules[0].query.aggregate",
            "message": "must be one of sum, mean, max, min, last, count, p50, p90, p95, p99, got 'median'",
        },
        {"field": "rules[0].threshold", "message": "required: a number: the value is compared with it by op"},
    ]
    with pytest.raises(AlertConfigError):
        env.service.apply("rules: [{name: bad}]", by="t")
    assert [r["name"] for r in env.service.rules()] == names  # nothing applied
    text = env.service.export()
    assert "ErrorsHigh" in text and "escalation_policies" in text
    res = env.service.apply(
        "rules: [{name: Only, query: {measurement: host, field: cpu}, threshold: 1}]", by="t", prune=True
    )
    assert res["rules"]["added"] == ["Only"] and sorted(res["rules"]["removed"]) == sorted(names)
    cfg = env.service.config()
    assert cfg["route"]["receiver"] == "pager" and {c["name"] for c in cfg["channels"]} >= {
        "hook",
        "mail",
        "log",
    }
