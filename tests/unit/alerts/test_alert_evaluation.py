"""Every state transition of alert evaluation, on a fake clock over an in-memory metric store."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from alerts.engine import AlertEngine
from alerts.evaluator import Evaluator, plan
from alerts.rulefile import load_text
from alerts.service import AlertService
from alerts.store import AlertStore
from tests.unit.alerts.fakes import FakeClock, FakeMetricStore

PAYMENT_RULE = """
rules:
  - name: PaymentSuccessRateLow
    query:
      measurement: payments
      ratio: {numerator: [success], denominator: [success, failure]}
      aggregate: sum
      window: 1m
      group_by: [app]
    op: "<"
    threshold: 0.95
    for: 1m
    severity: critical
    annotations: {summary: "success rate {value}"}
"""


@pytest.fixture
def env(tmp_path):
    clock = FakeClock()
    metrics = FakeMetricStore()
    store = AlertStore(f"sqlite:///{tmp_path}/control.db")
    service = AlertService(store, clock=clock)
    ev = Evaluator(store, metrics, clock=clock)
    yield SimpleNamespace(clock=clock, metrics=metrics, store=store, service=service, ev=ev)
    store.close()


def payments(env, success: int, failure: int, app: str = "shop") -> None:
    env.metrics.add(
        "payments",
        {"app": app, "instance": "n1"},
        {"success": success, "failure": failure},
        env.clock.now() - timedelta(seconds=1),
    )


def states(env) -> dict[str, str]:
    return {
        a["rule"] + str(sorted(a["labels"].items())): a["state"]
        for a in env.service.list_alerts(("pending", "firing"))
    }


def open_alerts(env, rule: str | None = None):
    return [a for a in env.store.open_alerts() if rule is None or a.rule == rule]


def test_for_moves_pending_then_firing_then_resolved(env):
    env.service.apply(PAYMENT_RULE, by="t")
    payments(env, 90, 10)
    env.ev.evaluate()
    [a] = open_alerts(env)
    assert a.state == "pending" and a.value == pytest.approx(0.9)
    env.clock.advance(30)
    payments(env, 80, 20)
    env.ev.evaluate()
    assert open_alerts(env)[0].state == "pending"
    env.clock.advance(30)  # held for exactly `for`
    payments(env, 80, 20)
    env.ev.evaluate()
    [a] = open_alerts(env)
    assert a.state == "firing" and a.fired_at == env.clock.now()
    assert a.annotations["summary"].startswith("success rate 80.0 %")
    env.clock.advance(70)  # old failures leave the window
    payments(env, 100, 0)
    env.ev.evaluate()
    assert open_alerts(env) == []
    rec = env.store.get_alert(a.id)
    assert rec.state == "resolved" and rec.resolved_at == env.clock.now()
    kinds = [e["kind"] for e in env.store.events(a.id)]
    assert kinds == ["pending", "firing", "resolved"]


def test_pending_clears_when_condition_stops_before_for(env):
    env.service.apply(PAYMENT_RULE, by="t")
    payments(env, 50, 50)
    env.ev.evaluate()
    [a] = open_alerts(env)
    env.clock.advance(61)
    payments(env, 100, 0)
    env.ev.evaluate()
    assert open_alerts(env) == []
    rec = env.store.get_alert(a.id)
    assert rec.state == "inactive" and rec.fired_at is None
    assert [e["kind"] for e in env.store.events(a.id)] == ["pending", "cleared"]
    assert env.service.history() == []  # never fired


def test_for_zero_fires_at_once_and_refire_is_a_new_alert(env):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", "for: 0s"), by="t")
    payments(env, 10, 90)
    env.ev.evaluate()
    [first] = open_alerts(env)
    assert first.state == "firing"
    env.clock.advance(61)
    env.ev.evaluate()  # no data in the window → normal → resolved
    assert open_alerts(env) == []
    payments(env, 10, 90)
    env.ev.evaluate()
    [second] = open_alerts(env)
    assert second.id != first.id and second.fingerprint == first.fingerprint


def test_keep_firing_for_holds_the_alert_after_the_condition_stops(env):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", "for: 0s\n    keep_firing_for: 30s"), by="t")
    payments(env, 10, 90)
    env.ev.evaluate()
    env.clock.advance(61)
    payments(env, 100, 0)
    env.ev.evaluate()  # condition false, but last true 61 s ago ≥ 30 s → resolved
    assert open_alerts(env) == []
    payments(env, 10, 90)
    env.ev.evaluate()
    [a] = open_alerts(env)
    env.clock.advance(10)
    env.metrics.clear()
    payments(env, 100, 0)
    env.ev.evaluate()  # false for 10 s < 30 s: still firing
    assert open_alerts(env)[0].state == "firing"
    env.clock.advance(20)
    env.ev.evaluate()  # false for 30 s: resolved
    assert open_alerts(env) == []
    assert env.store.get_alert(a.id).state == "resolved"


def test_group_by_gives_one_alert_per_label_set(env):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", "for: 0s"), by="t")
    payments(env, 10, 90, app="a")
    payments(env, 99, 1, app="b")
    payments(env, 50, 50, app="c")
    env.ev.evaluate()
    assert sorted(a.labels["app"] for a in open_alerts(env)) == ["a", "c"]
    assert {a.labels["alertname"] for a in open_alerts(env)} == {"PaymentSuccessRateLow"}
    assert {a.labels["severity"] for a in open_alerts(env)} == {"critical"}


@pytest.mark.parametrize(
    ("policy", "expect"),
    [("alerting", ["firing"]), ("normal", []), ("keep_last", "unchanged")],
)
def test_no_data_policies(env, policy, expect):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", f"for: 0s\n    no_data: {policy}"), by="t")
    env.ev.evaluate()  # nothing written at all
    if policy == "alerting":
        [a] = open_alerts(env)
        assert a.state == "firing" and a.labels["reason"] == "no_data"
        payments(env, 100, 0)
        env.ev.evaluate()  # data is back and healthy: the no-data alert resolves
        assert open_alerts(env) == []
    elif policy == "normal":
        assert open_alerts(env) == []
    else:
        assert open_alerts(env) == []
        payments(env, 10, 90)
        env.ev.evaluate()
        [a] = open_alerts(env)
        env.clock.advance(120)  # data gone: keep_last leaves the firing alert as it is
        env.ev.evaluate()
        assert [x.id for x in open_alerts(env)] == [a.id]


@pytest.mark.parametrize("policy", ["alerting", "normal", "keep_last"])
def test_query_error_policies(env, policy):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", f"for: 0s\n    on_error: {policy}"), by="t")
    payments(env, 10, 90)
    env.ev.evaluate()
    [a] = open_alerts(env)
    env.metrics.fail_measurements.add("payments")
    report = env.ev.evaluate()
    assert "PaymentSuccessRateLow" in report.errors
    if policy == "normal":
        assert open_alerts(env) == []
    else:  # alerting keeps the open alert firing; keep_last changes nothing
        assert [x.id for x in open_alerts(env)] == [a.id]


def test_error_policy_alerting_raises_an_alert_when_none_is_open(env):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", "for: 0s\n    on_error: alerting"), by="t")
    env.metrics.fail_measurements.add("payments")
    env.ev.evaluate()
    [a] = open_alerts(env)
    assert a.labels["reason"] == "error" and a.state == "firing"


def test_one_failing_rule_never_stops_the_others(env):
    env.service.apply(
        PAYMENT_RULE.replace("for: 1m", "for: 0s")
        + """
  - name: HostCpuHigh
    query: {measurement: host, field: cpu, aggregate: max, window: 1m, group_by: [instance]}
    op: ">"
    threshold: 90
""",
        by="t",
    )
    env.metrics.fail_measurements.add("host")
    payments(env, 10, 90)
    report = env.ev.evaluate()
    assert list(report.errors) == ["HostCpuHigh"]
    assert [a.rule for a in open_alerts(env)] == ["PaymentSuccessRateLow"]


def test_delta_function_detects_a_growing_backlog(env):
    env.service.apply(
        """
rules:
  - name: OutboxBacklogGrowing
    query: {measurement: collector, field: outbox_depth, aggregate: max, window: 1m, bucket: 15s,
            function: delta, group_by: [instance]}
    op: ">"
    threshold: 0
    for: 0s
""",
        by="t",
    )
    t = env.clock.now()
    for i in range(60):
        env.metrics.add(
            "collector",
            {"app": "a", "instance": "n1"},
            {"outbox_depth": 100 + i * 10},
            t - timedelta(seconds=60 - i),
        )
        env.metrics.add(
            "collector", {"app": "a", "instance": "n2"}, {"outbox_depth": 5}, t - timedelta(seconds=60 - i)
        )
    env.ev.evaluate()
    [a] = open_alerts(env)
    assert a.labels["instance"] == "n1" and a.value > 400


def test_where_filters_and_batching_share_one_query(env):
    docs = "rules:\n" + "".join(
        f"""  - name: Lat{i}
    query: {{measurement: resource_stats, field: rt_avg_ms, aggregate: p99, window: 1m,
             where: {{resource: r{i}}}, group_by: [instance]}}
    op: ">"
    threshold: 500
"""
        for i in range(20)
    )
    env.service.apply(docs, by="t")
    for i in range(20):
        env.metrics.add(
            "resource_stats",
            {"app": "a", "instance": "n1", "resource": f"r{i}"},
            {"rt_avg_ms": 600 if i == 7 else 100},
            env.clock.now() - timedelta(seconds=5),
        )
    report = env.ev.evaluate()
    assert report.queries == 1  # 20 rules, one query shape
    [a] = open_alerts(env)
    assert a.rule == "Lat7" and a.labels["resource"] == "r7" and a.labels["instance"] == "n1"
    rules = load_text(docs).rules
    [(q, members)] = plan(rules, env.clock.now())
    assert "resource" in q.group_by and len(members) == 20


def test_heartbeat_rule_fires_for_a_silent_node(env):
    class Nodes:
        def __init__(self):
            self.beats = {}

        def last_heartbeats(self, now):
            return dict(self.beats)

    nodes = Nodes()
    ev = Evaluator(env.store, env.metrics, clock=env.clock, nodes=nodes)
    env.service.apply(
        "rules:\n  - {name: NodeHeartbeatMissing, kind: heartbeat, op: '>', threshold: 30, for: 0s}\n", by="t"
    )
    nodes.beats = {"n1": env.clock.now(), "n2": env.clock.now()}
    env.clock.advance(20)
    nodes.beats["n1"] = env.clock.now()
    ev.evaluate()
    assert open_alerts(env) == []
    env.clock.advance(15)  # n2 silent for 35 s
    ev.evaluate()
    [a] = open_alerts(env)
    assert a.labels["instance"] == "n2" and a.value == pytest.approx(35)
    nodes.beats["n2"] = env.clock.now()
    ev.evaluate()
    assert open_alerts(env) == []


def test_breaker_event_fires_at_once_and_closing_resolves(env):
    env.service.apply(
        """
rules:
  - name: BreakerOpen
    query: {measurement: breaker_events, field: state, aggregate: last, window: 1d,
            group_by: [app, instance, resource]}
    op: "=="
    threshold: 1
    for: 5m
    on_breaker_state: open
""",
        by="t",
    )
    ev = SimpleNamespace(
        resource="payment.charge", previous="closed", state="open", at=env.clock.now(), rule=None
    )
    env.ev.on_breaker_event(ev, {"app": "shop", "instance": "n1"})
    [a] = open_alerts(env)
    assert a.state == "firing"  # `for` is skipped for the event
    assert a.labels["resource"] == "payment.charge"
    # the metric store has not seen the event yet: the next cycle does not resolve it (grace)
    env.clock.advance(10)
    env.ev.evaluate()
    assert [x.id for x in open_alerts(env)] == [a.id]
    env.clock.advance(1)
    closed = SimpleNamespace(
        resource="payment.charge", previous="open", state="half_open", at=env.clock.now(), rule=None
    )
    env.ev.on_breaker_event(closed, {"app": "shop", "instance": "n1"})
    assert open_alerts(env) == []


def test_breaker_poll_over_the_measurement(env, tmp_path):
    engine = AlertEngine(env.store, env.metrics, clock=env.clock)
    from alerts.engine import ensure_default_rules

    assert ensure_default_rules(env.store, env.clock.now())
    env.metrics.add(
        "breaker_events",
        {"app": "a", "instance": "n1", "resource": "payment.charge"},
        {"state": 1, "previous": 0},
        env.clock.now() - timedelta(seconds=1),
    )
    report = engine.poll_breakers()
    assert report["rules"] == 1
    [a] = open_alerts(env)
    assert a.rule == "BreakerOpen" and a.labels["resource"] == "payment.charge"
    env.metrics.add(
        "breaker_events",
        {"app": "a", "instance": "n1", "resource": "payment.charge"},
        {"state": 2, "previous": 1},
        env.clock.now(),
    )
    env.clock.advance(2)
    engine.poll_breakers()
    assert [x.id for x in open_alerts(env)] == [a.id]  # half-open: not closed yet, the same alert
    env.metrics.add(
        "breaker_events",
        {"app": "a", "instance": "n1", "resource": "payment.charge"},
        {"state": 0, "previous": 2},
        env.clock.now(),
    )
    env.clock.advance(30)
    engine.poll_breakers()
    assert [x.id for x in open_alerts(env)] == [a.id]  # held for keep_firing_for (1m) after closing
    env.clock.advance(35)
    engine.poll_breakers()
    assert open_alerts(env) == []


def test_removed_rule_resolves_its_alerts_and_manual_resolve_is_respected(env):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", "for: 0s"), by="t")
    payments(env, 10, 90)
    env.ev.evaluate()
    [a] = open_alerts(env)
    env.service.resolve(a.id, by="alice", comment="known issue")
    env.ev.evaluate()  # still bad: a new alert opens
    [b] = open_alerts(env)
    assert b.id != a.id
    assert env.store.get_alert(a.id).resolved_by == "alice"
    env.service.set_rule_enabled("PaymentSuccessRateLow", False, by="t")
    env.ev.evaluate()
    assert open_alerts(env) == []


def test_ack_made_elsewhere_survives_evaluation(env):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", "for: 0s"), by="t")
    payments(env, 10, 90)
    env.ev.evaluate()
    [a] = open_alerts(env)
    env.service.acknowledge(a.id, by="bob")
    env.clock.advance(5)
    payments(env, 10, 90)
    env.ev.evaluate()
    assert env.store.get_alert(a.id).acknowledged_by == "bob"


def test_heartbeats_from_the_guardians_fleet(env, tmp_path):
    from alerts.nodes import FleetNodes

    nodes = FleetNodes.from_url(f"sqlite:///{tmp_path}/control.db")
    nodes.fleet.beat("n1", "127.0.0.1:8001", "0.1", 3, None, at=env.clock.now())
    nodes.fleet.beat("n2", "127.0.0.1:8002", "0.1", 3, None, at=env.clock.now())
    ev = Evaluator(env.store, env.metrics, clock=env.clock, nodes=nodes)
    env.service.apply(
        "rules:\n  - {name: NodeHeartbeatMissing, kind: heartbeat, op: '>', threshold: 30, for: 0s}\n", by="t"
    )
    env.clock.advance(31)
    nodes.fleet.beat("n1", "127.0.0.1:8001", "0.1", 3, None, at=env.clock.now())
    ev.evaluate()
    assert [a.labels["instance"] for a in open_alerts(env)] == ["n2"]
    nodes.close()


def test_metric_behind_an_alert_for_the_console_chart(env):
    svc = AlertService(env.store, clock=env.clock, metrics=env.metrics)
    svc.apply(PAYMENT_RULE.replace("for: 1m", "for: 0s"), by="t")
    start = env.clock.now()
    for i in range(30):
        env.metrics.add(
            "payments",
            {"app": "shop", "instance": "n1"},
            {"success": 10 if i >= 20 else 20, "failure": 10 if i >= 20 else 0},
            start + timedelta(seconds=i),
        )
        env.metrics.add(
            "payments",
            {"app": "other", "instance": "n2"},
            {"success": 5, "failure": 0},
            start + timedelta(seconds=i),
        )
    env.clock.advance(30)
    env.ev.evaluate()
    [a] = open_alerts(env)
    chart = svc.metric_behind(a.id, minutes=1, bucket_s=10)
    assert chart["rule"] == "PaymentSuccessRateLow" and chart["threshold"] == 0.95 and chart["op"] == "<"
    # each point is the rule's value over its 1-minute window ending there (the evaluator's view):
    # the last one is the alert's value, not the last 10 s bucket's 0.5
    assert chart["window_s"] == 60
    assert [p["value"] for p in chart["points"]] == pytest.approx([1.0, 1.0, 500 / 600])
    assert chart["points"][-1]["value"] == pytest.approx(a.value)
    # a bucket's ratio alone is drawn when the window is not whole buckets (the unit of the chart says so)
    per_bucket = svc.metric_behind(a.id, minutes=1, bucket_s=7)
    assert per_bucket["window_s"] == 7


def test_engine_on_breaker_event_dispatches_at_once(env):
    from alerts.engine import AlertEngine, ensure_default_rules

    sent = []

    class Hook:
        def send(self, payload, extra):
            sent.append(payload)

    engine = AlertEngine(env.store, env.metrics, clock=env.clock, senders={"log": Hook()})
    ensure_default_rules(env.store, env.clock.now())
    env.service.apply({"route": {"group_wait": "0s", "group_by": ["alertname"]}}, by="t")
    engine.on_breaker_event(
        SimpleNamespace(
            resource="payment.charge", previous="closed", state="open", at=env.clock.now(), rule=None
        ),
        {"app": "shop", "instance": "n1"},
    )
    engine.deliver()
    [payload] = sent
    assert payload["groupLabels"] == {"alertname": "BreakerOpen"}
    assert payload["alerts"][0]["labels"]["resource"] == "payment.charge"


def test_a_resolve_by_hand_during_a_cycle_is_not_undone(env):
    env.service.apply(PAYMENT_RULE.replace("for: 1m", "for: 0s"), by="t")
    payments(env, 10, 90)
    env.ev.evaluate()
    [a] = open_alerts(env)
    real_sync = env.ev.states.sync

    def sync_then_person_resolves(stored):
        real_sync(stored)
        env.service.resolve(a.id, by="carol")  # lands after the evaluator read the open alerts

    env.ev.states.sync = sync_then_person_resolves
    env.clock.advance(5)
    payments(env, 10, 90)
    env.ev.evaluate()
    rec = env.store.get_alert(a.id)
    assert rec.state == "resolved" and rec.resolved_by == "carol"
    assert a.fingerprint not in env.ev.states.open
