"""The Alerts page over the real alert service (SQLite control DB): an action lands on the picked
alert or is refused, never on another; handled alerts look handled; on-call can be set."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alerts.engine import ensure_default_rules
from alerts.model import fingerprint
from alerts.service import AlertService
from alerts.store import AlertRecord, AlertStore
from common.identity import Principal
from console.services import ConsoleServices

from .fakes import FakeChaos, FakeClock, FakeFleet, FakeRuleStore
from .signin import account_service, open_console, sign_in

PAGE = Path(__file__).resolve().parents[3] / "console" / "views" / "alerts_page.py"


@pytest.fixture
def env(tmp_path, metrics, monkeypatch):
    clock = FakeClock()
    store = AlertStore(f"sqlite:///{tmp_path / 'control.db'}")
    alerts = AlertService(store, clock=clock)
    ensure_default_rules(store, clock.now())
    svc = ConsoleServices(
        app="shop",
        metrics=metrics,
        rules=FakeRuleStore(),
        fleet=FakeFleet(),
        chaos=FakeChaos(),
        alerts=alerts,
        clock=clock,
    )
    monkeypatch.setattr("console.runtime.services", lambda: svc.as_user(Principal("olivia", "oncall")))
    yield store, alerts, clock
    store.close()


def add(store: AlertStore, clock, rule: str, state: str, value: float, **labels: str) -> AlertRecord:
    full = {"alertname": rule, "severity": "critical", "app": "shop", **labels}
    rec = AlertRecord(
        id=0,
        fingerprint=fingerprint(full),
        rule=rule,
        labels=full,
        annotations={"summary": f"{rule} summary", "runbook_url": "docs/runbooks.md#breakeropen"},
        severity="critical",
        state=state,
        active_since=clock.now() - timedelta(seconds=30),
        value=value,
        fired_at=clock.now() if state == "firing" else None,
        last_true_at=clock.now(),
    )
    return store.insert_alert(rec)


def change(store: AlertStore, alert_id: int, state: str) -> None:
    """What the evaluator does between the page's render and the person's click."""
    rec = store.get_alert(alert_id)
    rec.state = state
    if state in ("resolved", "inactive"):
        rec.resolved_at = rec.active_since + timedelta(minutes=1)
    store.update_alert(rec, columns=("state", "resolved_at"))


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def open_page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=30)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def several(store, clock) -> tuple[int, int, int]:
    pay = add(store, clock, "PaymentSuccessRateLow", "pending", 0.7617328519855595)
    brk = add(store, clock, "BreakerOpen", "firing", 1.0, instance="n1", resource="payment.charge")
    lat = add(store, clock, "OrderPlaceLatencyHigh", "firing", 812.4, instance="n1", resource="order.place")
    return pay.id, brk.id, lat.id


def ack_button(at: AppTest, alert_id: int):
    return next(b for b in at.button if b.label.startswith(f"Acknowledge #{alert_id} "))


def test_a_state_change_between_render_and_click_is_refused_never_moved(env):
    store, _, clock = env
    pay, brk, lat = several(store, clock)
    at = open_page()
    at.selectbox(key="alert_pick").set_value(pay).run()
    assert ack_button(at, pay).label == f"Acknowledge #{pay} PaymentSuccessRateLow"
    change(store, pay, "firing")  # the evaluator fires it after the page was drawn
    ack_button(at, pay).click().run()
    assert not at.exception
    assert f"Alert #{pay} PaymentSuccessRateLow changed from pending to firing" in texts(at.error)
    assert [a.acknowledged_by for a in store.open_alerts()] == [None, None, None]
    # the selection did not move; acting again on what is now shown works, on that alert only
    assert at.selectbox(key="alert_pick").value == pay
    ack_button(at, pay).click().run()
    assert f"Alert #{pay} PaymentSuccessRateLow: acknowledged by olivia" in texts(at.success)
    acked = {a.id: a.acknowledged_by for a in store.open_alerts()}
    assert acked == {pay: "olivia", brk: None, lat: None}


def test_a_picked_alert_that_closed_is_reported_and_nothing_else_is_acted_on(env):
    store, _, clock = env
    pay, brk, lat = several(store, clock)
    at = open_page()
    at.selectbox(key="alert_pick").set_value(pay).run()
    change(store, pay, "inactive")  # the pending alert cleared
    ack_button(at, pay).click().run()
    assert not at.exception
    assert f"Alert #{pay} PaymentSuccessRateLow is no longer open" in texts(at.warning)
    assert all(a.acknowledged_by is None for a in store.open_alerts())
    assert store.get_alert(pay).acknowledged_by is None
    # the picker lists open alerts only and did not jump to another one
    assert at.selectbox(key="alert_pick").value is None
    options = at.selectbox(key="alert_pick").options
    assert [o.split(" ")[0] for o in options] == [f"#{lat}", f"#{brk}"]  # newest first


def test_service_refuses_a_stale_action_with_the_alert_named(env):
    store, alerts, clock = env
    pay, _, _ = several(store, clock)
    change(store, pay, "firing")
    from alerts.errors import InvalidAction, NotFound

    changed = r"Alert #\d+ PaymentSuccessRateLow changed from pending to firing"
    with pytest.raises(InvalidAction, match=changed):
        alerts.acknowledge(pay, "olivia", expected_state="pending")
    change(store, pay, "resolved")
    with pytest.raises(InvalidAction, match="was resolved since you opened it"):
        alerts.resolve(pay, "olivia", expected_state="firing")
    with pytest.raises(NotFound, match="Alert #999 no longer exists"):
        alerts.acknowledge(999, "olivia", expected_state="firing")


def test_typed_text_stays_with_its_alert(env):
    store, _, clock = env
    pay, brk, _ = several(store, clock)
    at = open_page()
    at.selectbox(key="alert_pick").set_value(pay).run()
    at.text_input(key=f"alert_comment_{pay}").set_value("looking at the gateway").run()
    at.selectbox(key="alert_pick").set_value(brk).run()
    assert at.text_input(key=f"alert_comment_{brk}").value == ""
    assert f"Acknowledge #{brk} BreakerOpen" in [b.label for b in at.button]


def test_handled_alerts_count_apart_and_values_have_units(env):
    store, alerts, clock = env
    pay, brk, lat = several(store, clock)
    change(store, pay, "firing")
    alerts.acknowledge(brk, "olivia")
    alerts.silence_alert(lat, created_by="olivia", comment="known slow", duration="1h")
    at = open_page()
    metric = {m.label: m.value for m in at.metric}
    assert (metric["Firing"], metric["Handled"], metric["Pending"]) == ("1", "2", "0")
    board = at.dataframe[0].value
    assert list(board.columns[:4]) == ["id", "state", "acknowledged by", "silenced"]
    rows = {r["id"]: r for r in board.to_dict("records")}
    assert rows[brk]["acknowledged by"] == "olivia" and rows[lat]["silenced"].startswith("silenced #")
    assert rows[pay]["value"] == "76.2 %" and rows[lat]["value"] == "812 ms" and rows[brk]["value"] == "open"
    at.selectbox(key="alert_pick").set_value(pay).run()
    shown = texts(at.markdown)
    assert "value **76.2 %** (threshold < 95.0 %)" in shown
    assert "Related: resource **payment.charge** · app **shop**" in shown  # the gateway behind the rule
    assert "Runbook (docs/runbooks.md" in "\n".join(e.label for e in at.expander)
    assert "alertname=PaymentSuccessRateLow" in at.text_input(key="silence_matchers").placeholder


def test_on_call_can_be_set_from_the_page(env):
    _, alerts, _ = env
    at = open_page()
    assert {m.label: m.value for m in at.metric}["On call now"] == "nobody"
    at.text_input(key="oncall_who").set_value("dora")
    at.button(key="FormSubmitter:oncall_form-Put on call").click().run()
    assert not at.exception
    assert "dora is on call for primary" in texts(at.success)
    assert [(o["rotation"], o["name"], o["override"]) for o in alerts.on_call_now()] == [
        ("primary", "dora", True)
    ]
    assert "dora (primary)" in {m.label: m.value for m in at.metric}["On call now"]


def test_chaos_banner_on_every_page_and_a_local_favicon(env, monkeypatch, tmp_path):
    import streamlit
    from streamlit.commands.page_config import _get_favicon_string

    import console.runtime

    seen: dict = {}
    real = streamlit.set_page_config

    def capture(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(streamlit, "set_page_config", capture)
    svc = console.runtime.services()._svc  # the services behind the signed-in view
    svc.accounts = account_service(tmp_path, svc.clock)
    at = sign_in(open_console(monkeypatch, svc), "olivia")
    assert "Payment chaos is ON" not in texts(at.error)
    svc.chaos.settings = {"latency_ms": 300, "error_rate": 0.5, "outage": False}
    for view in ("overview", "alerts_page", "resources"):
        at.switch_page(f"../console/views/{view}.py").run()
        assert not at.exception, view
        banner = texts(at.error)
        assert "Payment chaos is ON" in banner and "+300 ms latency, 50 % of charges fail" in banner, view
    # the favicon is a file shipped with the console, inlined as a data URL: nothing to fetch
    assert Path(seen["page_icon"]).is_file()
    assert _get_favicon_string(seen["page_icon"]).startswith("data:image/svg+xml;base64,")


def _seed_gateway_fault(metrics, clock) -> int:
    """10 healthy minutes of charges; failures on n1 in the last 120 s and on n2 in the last 60 s."""
    from collectors.query import Point

    from .points import at, payment_point, resource_point

    n = int(clock.now().timestamp())
    points = []
    for s in range(n - 600, n):
        points.append(payment_point(s, success=4, failure=6 if s >= n - 120 else 0))
        points.append(resource_point(s, "payment.charge", passed=4, block_breaker=3 if s >= n - 30 else 0))
        if s >= n - 60:
            points.append(Point("payments", {"app": "shop", "instance": "n2"},
                                {"success": 1.0, "failure": 2.0, "latency_ms": 30.0}, at(s)))
    metrics.write(points)
    return n


def test_a_payment_alert_shows_the_gateways_recent_errors(env, metrics):
    store, alerts, clock = env
    _seed_gateway_fault(metrics, clock)
    pay = add(store, clock, "PaymentSuccessRateLow", "firing", 0.55)
    svc = ConsoleServices(app="shop", metrics=metrics, rules=FakeRuleStore(), fleet=FakeFleet(),
                          chaos=FakeChaos(), alerts=alerts, clock=clock)
    alert = alerts.timeline(pay.id)["alert"]
    gw = svc.gateway_errors(alert)
    assert gw is not None and gw.errors == []
    # the alert's window: from 5 min before it became active (30 s ago) to now
    assert gw.start == clock.now() - timedelta(seconds=330) and gw.end == clock.now()
    assert gw.failed == 6 * 120 + 2 * 60
    # n1: 4 charges/s, 10/s in the fault's last 120 s; n2: 3/s in the last 60 s. The clock is today's,
    # inside a second: the window holds the whole seconds from the first one after its start
    n1_seconds = int(clock.now().timestamp()) - math.ceil(gw.start.timestamp())
    assert gw.charges == 4 * (n1_seconds - 120) + 10 * 120 + 3 * 60
    assert gw.breaker_blocked == 3 * 30
    assert [row["instance"] for row in gw.by_instance] == ["n1", "n2"]
    assert gw.by_instance[1]["failure %"] == pytest.approx(66.7)
    assert gw.recent and all(row["failed"] or row["breaker blocked"] for row in gw.recent)
    assert gw.recent[0]["bucket"] > gw.recent[-1]["bucket"]  # newest first
    # not a payment alert: nothing to show, no query
    lat = add(store, clock, "OrderPlaceLatencyHigh", "firing", 812.4, resource="order.place")
    assert svc.gateway_errors(alerts.timeline(lat.id)["alert"]) is None

    at_ = open_page()
    at_.selectbox(key="alert_pick").set_value(pay.id).run()
    assert not at_.exception
    shown = texts(at_.markdown)
    assert f"**{6 * 120 + 2 * 60:,}** of" in shown and "Recent gateway errors" in shown
    assert "tradeguard events tail --name PaymentFailed" in texts(at_.caption)


def test_a_resource_alert_links_the_exemplar_traces_that_made_it_fire(env, tmp_path):
    import console.runtime
    from tradeguard.tracing import SpanRecord, SpanStore, TraceReader

    store, _alerts, clock = env
    spans = SpanStore(tmp_path / "traces.db")
    t0 = int((clock.now() - timedelta(seconds=20)).timestamp() * 1e9)
    failed, other_node = "c" * 32, "d" * 32
    spans.write([
        ([SpanRecord(failed, "1" * 16, None, "payment.charge", "client", t0, t0 + 9 * 10**6, "error",
                     "declined", {"peer.service": "payment-gateway"}, "n1")], "error"),
        ([SpanRecord(other_node, "2" * 16, None, "payment.charge", "client", t0, t0 + 10**6, "error",
                     "declined", {}, "n2")], "error"),
    ])
    console.runtime.services()._svc.traces = TraceReader(spans)  # on the services the page view wraps
    brk = add(store, clock, "BreakerOpen", "firing", 1.0, instance="n1", resource="payment.charge")
    at = open_page()
    at.selectbox(key="alert_pick").set_value(brk.id).run()
    assert not at.exception
    shown = texts(at.markdown)
    assert "Exemplar traces" in shown and f"traces?trace_id={failed}" in shown
    assert other_node not in shown  # the alert names node n1
    spans.close()


def escalate_button(at: AppTest, alert_id: int):
    return next(b for b in at.button if b.label.startswith(f"Escalate #{alert_id} "))


TWO_STEPS = """
route: {receiver: pager, group_by: [alertname], group_wait: 0s, group_interval: 1m, repeat_interval: 1h}
channels:
  - {name: first, kind: log}
  - {name: second, kind: log}
escalation_policies:
  - name: pager
    steps:
      - channels: [first]
      - {wait: 10m, channels: [second]}
"""


def test_a_firing_alert_can_be_escalated_by_the_signed_in_user_and_only_that_alert(env):
    store, alerts, clock = env
    alerts.apply(TWO_STEPS, by="setup")
    pay, brk, lat = several(store, clock)
    at = open_page()
    at.selectbox(key="alert_pick").set_value(pay).run()
    # a pending alert has nothing to escalate yet
    assert not [b for b in at.button if b.label.startswith("Escalate #")]
    at.selectbox(key="alert_pick").set_value(brk).run()
    assert escalate_button(at, brk).label == f"Escalate #{brk} BreakerOpen"
    escalate_button(at, brk).click().run()
    assert not at.exception
    assert f"Alert #{brk} BreakerOpen: escalated by olivia" in texts(at.success)
    steps = {a.id: a.escalation_step for a in store.open_alerts()}
    assert steps == {pay: 0, brk: 1, lat: 0}
    events = alerts.timeline(brk)["events"]
    assert [(e["kind"], e["by"]) for e in events if e["kind"] == "escalated"] == [("escalated", "olivia")]
    # the last step is reached: escalating again is refused with the service's reason
    escalate_button(at, brk).click().run()
    assert "no further step" in texts(at.error)
    assert store.get_alert(brk).escalation_step == 1


def test_escalate_needs_the_ack_permission(env):
    store, alerts, clock = env
    _, brk, _ = several(store, clock)
    from console.services.access import GuardedAlerts

    viewer = GuardedAlerts(alerts, Principal("mo", "merchant", ("shop",)))
    with pytest.raises(Exception, match="may not acknowledge alerts"):
        viewer.escalate(brk, "mo")
    assert store.get_alert(brk).escalation_step == 0


def test_escalating_an_alert_that_changed_is_refused(env):
    store, _, clock = env
    _, brk, _ = several(store, clock)
    at = open_page()
    at.selectbox(key="alert_pick").set_value(brk).run()
    change(store, brk, "inactive")
    escalate_button(at, brk).click().run()
    assert not at.exception
    assert store.get_alert(brk).escalation_step == 0
    assert f"Alert #{brk} BreakerOpen" in texts(at.warning) + texts(at.error)


def test_the_detail_shows_handled_alerts_as_the_board_does_and_names_the_cause(env):
    store, alerts, clock = env
    pay = add(store, clock, "PaymentSuccessRateLow", "firing", 0.41)
    brk = add(store, clock, "BreakerOpen", "firing", 1.0, instance="n1", resource="payment.charge")
    lat = add(store, clock, "OrderPlaceLatencyHigh", "firing", 812.4, instance="n1", resource="order.place")
    alerts.silence_alert(lat.id, created_by="olivia", comment="known slow", duration="1h")
    at = open_page()
    rows = {r["id"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows[brk.id]["silenced"] == f"inhibited by #{pay.id} PaymentSuccessRateLow"
    assert {m.label: m.value for m in at.metric}["Firing"] == "1"  # the cause only
    at.selectbox(key="alert_pick").set_value(brk.id).run()
    assert f"state **firing** (inhibited by #{pay.id} PaymentSuccessRateLow)" in texts(at.markdown)
    at.selectbox(key="alert_pick").set_value(lat.id).run()
    assert "state **firing** (silenced #" in texts(at.markdown)
    silence = next(b for b in at.button if b.label == f"Silence #{lat.id}")
    assert silence.disabled  # silenced already: a second silence is not offered


def test_the_board_redraws_the_picker_when_what_it_shows_is_no_longer_true():
    from console.services.alert_actions import look, view_changed

    firing = {"id": 7, "state": "firing", "acknowledged_by": None, "silenced_by": [], "inhibited": False}
    pending = {**firing, "id": 8, "state": "pending"}
    listed = {"ids": [7, 8], "picked": 8, "look": look(pending)}
    assert view_changed(None, [firing]) is None  # a full run is drawing the page: nothing to compare
    assert view_changed(listed, [firing, pending]) is None
    assert view_changed(listed, [firing, {**pending, "value": 0.3}]) is None  # a new value is no redraw
    assert view_changed(listed, [firing]) == "#8 closed"
    assert view_changed(listed, [firing, pending, {**firing, "id": 9}]) == "#9 opened"
    fired = {**pending, "state": "firing"}
    assert view_changed(listed, [firing, fired]) == "#8 is firing now (shown as pending)"
    acked = {**pending, "acknowledged_by": "dora"}
    said = "#8 is pending, acknowledged by dora now (shown as pending)"
    assert view_changed(listed, [firing, acked]) == said
    assert view_changed({"ids": [], "picked": None, "look": None}, [firing]) == "#7 opened"


def test_the_alert_chart_is_in_the_rules_unit():
    from dashboards import figures

    points = [{"time": "2026-11-11T07:00:00+00:00", "value": 0.4123}]
    fig = figures.alert_metric_figure(points, 0.95, "<", "PaymentSuccessRateLow", "%")
    assert list(fig.data[0].y) == [41.23] and fig.layout.yaxis.title.text == "%"
    assert fig.layout.annotations[0].text == "fires when < 95.0 %"
    breaker = figures.alert_metric_figure([{**points[0], "value": 2.0}], 1, ">=", "B", "breaker")
    assert list(breaker.layout.yaxis.ticktext) == ["closed", "open", "half-open"]
    assert breaker.layout.annotations[0].text == "fires when >= open"
