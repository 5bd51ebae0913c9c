"""Each console page's logic through ``streamlit.testing.v1.AppTest`` (no browser).

The pages get the facade from ``console.runtime.services``; here it is a
``ConsoleServices`` on an embedded metric store in tmp_path with fake control stores
(the whole app runs from its entry script with the composition root's builder replaced).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from common.identity import Principal

from .fakes import NoNodeChaos, node
from .points import delivery_point, order_point, resource_point
from .signin import account_service, sign_in

ROOT = Path(__file__).resolve().parents[3]
CONSOLE = ROOT / "console"
ENTRY = ROOT / "tradeguard" / "console_main.py"
TIMEOUT = 30


@pytest.fixture
def user():
    """Who the pages are signed in as (the audit records this name)."""
    return Principal("bob", "admin")


@pytest.fixture
def page(monkeypatch, svc, user):
    monkeypatch.setattr("console.runtime.services", lambda: svc.as_user(user))

    def open_page(name: str) -> AppTest:
        at = AppTest.from_file(str(CONSOLE / "views" / f"{name}.py"), default_timeout=TIMEOUT)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return open_page


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_overview_empty_state(page):
    at = page("overview")
    assert "No data yet" in _texts(at.info)
    assert len(at.get("plotly_chart")) == 6
    assert "13 queries per refresh" in _texts(at.caption)


def test_overview_with_traffic_and_range_switch(page, svc, metrics, clock):
    s = int(clock.now().timestamp()) - 20
    metrics.write([order_point(s, placed=10, paid=8, gmv=100.0), resource_point(s, "order.place", passed=10)])
    at = page("overview")
    assert "No data yet" not in _texts(at.info)
    metric = {m.label: m.value for m in at.metric}
    assert metric["Orders placed, per shop (5 min)"] == "10"
    at.segmented_control(key="overview_range").set_value("1h").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Orders placed, per shop (1 hour)"] == "10"


def test_overview_shows_fulfilment_per_minute(page, metrics, clock):
    s = int(clock.now().timestamp()) - 30
    metrics.write([delivery_point(s, shipped=7, carrier="SF"), delivery_point(s, delivered=5, received=3),
                   delivery_point(s, received=1, tx_type="cod", shop="c1")])
    at = page("overview")
    assert "No data yet" not in _texts(at.info)
    assert "Fulfilment (5 min), sub-orders: shipped 7 · delivered 5 · received 4" in _texts(at.caption)
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Fulfilment per minute" in spec for spec in titles)


def test_resources_table_detail_and_empty_state(page, svc, metrics, clock):
    at = page("resources")
    assert "No data yet" in _texts(at.info)
    s = int(clock.now().timestamp()) - 10
    metrics.write(
        [
            resource_point(s, "order.place", passed=9, block_flow=1),
            resource_point(s, "payment.charge", passed=3),
        ]
    )
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 9}]}, "ann", "setup")
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["resource"]) == ["order.place", "payment.charge"]
    assert at.selectbox(key="resources_selected").value == "order.place"
    assert "Rule version 1 in force" in _texts(at.caption)
    # the selected resource's blocked / slow / error requests, on the Traces page
    assert "traces?resource=order.place&outcome=blocked" in _texts(at.markdown)
    at.selectbox(key="resources_selected").set_value("payment.charge").run()
    assert "No rule of version 1 names payment.charge" in _texts(at.caption)


def _form_input(at: AppTest, kind: str, idx, gen: int, field: str):
    key = f"fld_{kind}_{idx}_{gen}_{field}"
    for widget in (*at.number_input, *at.text_input, *at.selectbox, *at.checkbox):
        if widget.key == key:
            return widget
    raise AssertionError(f"no widget {key}")


def test_rules_form_validates_next_to_the_field_then_applies(page, svc):
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 50}]}, "ann", "baseline")
    at = page("rules")
    assert "Version 1 in force" in _texts(at.markdown)
    gen = at.session_state["rules_gen"]
    at.selectbox(key=f"form_kind_{gen}").set_value("param").run()
    assert at.selectbox(key=f"form_idx_param_{gen}").value == -1  # "+ new rule"
    _form_input(at, "param", -1, gen, "resource").set_value("order.place")
    _form_input(at, "param", -1, gen, "param").set_value("sku")
    _form_input(at, "param", -1, gen, "threshold").set_value(-3)
    at.button(key=f"FormSubmitter:rule_form_param_-1_{gen}-Save to draft & validate").click().run()
    assert not at.exception
    # the error sits in the rule's form, under the threshold field, and the draft cannot be applied
    errors = _texts(at.error)
    assert "`param[0].threshold`: must be an integer >= 0 and <= 10000000, got -3" in errors
    assert at.session_state["rules_form_errors"][0].path == "param[0].threshold"
    _form_input(at, "param", 0, gen, "threshold").set_value(20)
    at.button(key=f"FormSubmitter:rule_form_param_0_{gen}-Save to draft & validate").click().run()
    assert not at.session_state["rules_form_errors"]
    # review: the diff shows the new rule, then apply with a name and a reason
    assert any("+param:" in c.value or "param:" in c.value for c in at.code)
    at.text_area(key="apply_why").set_value("hot SKU during the sale")
    at.button(key="FormSubmitter:apply_form-Apply as version 2").click().run()
    assert not at.exception
    assert "Version 2 applied" in _texts(at.success)
    current = svc.rules_in_force()
    assert current.version == 2 and current.by == "bob" and current.document["param"][0]["threshold"] == 20


def test_rules_apply_needs_a_name_and_a_reason(page, svc):
    at = page("rules")
    assert "No rules applied yet" in _texts(at.info)
    gen = at.session_state["rules_gen"]
    yaml_area = next(t for t in at.text_area if t.key.startswith(f"yaml_{gen}_"))
    yaml_area.set_value("flow:\n  - {resource: order.place, threshold: 5}\n")
    at.button(key="yaml_use").click().run()
    assert not at.exception
    assert at.session_state["rules_draft"] == {"flow": [{"resource": "order.place", "threshold": 5}]}
    at.button(key="FormSubmitter:apply_form-Apply as version 1").click().run()
    errors = _texts(at.error)
    assert "a reason is required" in errors
    assert svc.rules_in_force() is None


def test_rules_yaml_errors_name_path_and_line(page):
    at = page("rules")
    gen = at.session_state["rules_gen"]
    yaml_area = next(t for t in at.text_area if t.key.startswith(f"yaml_{gen}_"))
    yaml_area.set_value("flow:\n  - resource: order.place\n    threshold: 0\n")
    at.button(key="yaml_validate").click().run()
    assert "line 3 · `flow[0].threshold`" in _texts(at.error)
    assert at.session_state["rules_draft"] == {}  # validate never changes the draft


def test_rules_history_and_rollback(page, svc):
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 50}]}, "ann", "baseline")
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 5}]}, "bob", "sale")
    at = page("rules")
    history = next(d.value for d in at.dataframe if "why" in d.value.columns)
    assert list(history["version"]) == [2, 1] and list(history["by"]) == ["bob", "ann"]
    at.selectbox(key="history_pick").set_value(1).run()
    assert any("threshold: 50" in c.value for c in at.code)
    at.text_input(key="rollback_why").set_value("sale over")
    at.button(key="FormSubmitter:rollback_form-Roll back to version 1").click().run()
    assert not at.exception
    assert "version 3 now has the rules of version 1" in _texts(at.success)
    assert svc.rules_in_force().document["flow"][0]["threshold"] == 50
    assert svc.rules_in_force().by == "bob"  # the signed-in user, not a typed name


def test_rules_impact_preview_numbers(page, svc, metrics, clock):
    base = int(clock.now().timestamp()) - 100
    metrics.write(
        [
            resource_point(base, "order.place", passed=8, block_flow=2, rt=50.0),
            resource_point(base + 1, "order.place", passed=3, rt=100.0),
            resource_point(base + 2, "order.place", passed=12, block_system=3, rt=200.0),
        ]
    )
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 5}]}, "ann", "sale")
    at = page("rules")
    metric = {m.label: (m.value, m.delta) for m in at.metric}
    # 10, 3, 15 offered; at most 5 a second pass: 5 + 0 + 10 blocked (hand-computed)
    assert metric["Offered calls"][0] == "28"
    assert metric["Would block"] == ("15", "53.6 %")
    assert metric["Blocked by rules in force"][0] == "5"
    assert metric["Seconds with blocks"][0] == "2 / 3"


def test_instances_page_highlights_old_rule_versions(page, svc, clock):
    at = page("instances")
    assert "No node has reported yet" in _texts(at.info)
    svc.rules.apply("shop", {"flow": [{"resource": "a", "threshold": 1}]}, "a", "b")
    svc.rules.apply("shop", {"flow": [{"resource": "a", "threshold": 2}]}, "a", "b")
    now = clock.now()
    svc.fleet.nodes_ = [
        node("n1", "127.0.0.1:1", "live", "0.1.0", 2, now, now),
        node("n2", "127.0.0.1:2", "live", "0.1.0", 1, now, now),
    ]
    at.run()
    assert not at.exception
    assert "1 node(s) enforce an old rule version" in _texts(at.error)
    assert "n2 (v1)" in _texts(at.error)
    assert {m.label: m.value for m in at.metric}["Live"] == "2"


def test_chaos_page_sets_and_resets(page, svc):
    at = page("chaos")
    assert "calm" in _texts(at.success)
    at.slider(key="chaos_rate").set_value(0.5)
    at.slider(key="chaos_latency").set_value(300)
    at.button(key="FormSubmitter:chaos_form-Apply").click().run()
    assert not at.exception
    assert svc.chaos.calls[-1] == {"latency_ms": 300, "error_rate": 0.5, "outage": False, "by": "bob"}
    assert "Chaos is ON" in _texts(at.error)
    at.button(key="FormSubmitter:chaos_form-Reset (calm)").click().run()
    assert svc.chaos.calls[-1]["error_rate"] == 0.0 and "calm" in _texts(at.success)


def test_chaos_page_without_a_live_node(page, svc):
    svc.chaos = NoNodeChaos()
    at = page("chaos")
    assert "Chaos control unavailable" in _texts(at.warning)
    assert "no live node" in _texts(at.warning)


def test_app_navigation_lists_every_page(monkeypatch, svc, tmp_path, clock):
    """The entry script of ``tradeguard console`` hands the composition root's services to the app."""
    built = []
    svc.accounts = account_service(tmp_path, clock)
    monkeypatch.setattr("console.runtime._installed", None)  # restored after the test
    monkeypatch.setattr(
        "tradeguard.bootstrap.build_console_services", lambda settings: built.append(settings) or svc
    )
    st.cache_resource.clear()
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    sign_in(at, "sam")
    assert "Order-flow health" in _texts(at.title)
    assert "app **shop**" in _texts(at.caption)
    for view, title in (
        ("alerts_page", "Alerts"),
        ("resources", "Resources"),
        ("rules", "Rules"),
        ("instances", "Instances"),
        ("chaos", "Chaos: payment gateway"),
    ):
        at.switch_page(f"../console/views/{view}.py").run()
        assert not at.exception, view
        assert title in _texts(at.title)
    assert len(built) == 1  # built once per process, not per run
    st.cache_resource.clear()


def test_alerts_page_all_clear_then_acknowledge_and_silence(page, svc):
    at = page("alerts_page")
    assert "All clear" in _texts(at.success)
    assert "No alert has fired yet" in _texts(at.caption)
    svc.alerts.add(1, "firing", "PaymentSuccessLow")
    svc.alerts.add(2, "pending", "BlockedShareHigh", severity="warning")
    at.run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Firing"] == "1"
    assert "alice (primary)" in {m.label: m.value for m in at.metric}["On call now"]
    board = at.dataframe[0].value
    assert list(board["alert"]) == ["PaymentSuccessLow", "BlockedShareHigh"]
    assert at.selectbox(key="alert_pick").value == 1
    ack = "FormSubmitter:alert_action_1-Acknowledge #1 PaymentSuccessLow"
    assert not any(t.key == "alert_by_1" for t in at.text_input)  # no "Your name" box
    at.button(key=ack).click().run()
    assert not at.exception
    assert "acknowledged by bob" in _texts(at.success)
    assert svc.alerts.alerts[0]["acknowledged_by"] == "bob"
    at.text_input(key="silence_matchers").set_value("alertname=BlockedShareHigh")
    at.button(key="FormSubmitter:silence_form-Silence").click().run()
    assert "comment: required" in _texts(at.error)
    at.text_input(key="silence_comment").set_value("known: sale traffic")
    at.button(key="FormSubmitter:silence_form-Silence").click().run()
    assert svc.alerts.silence_list[0]["matchers"] == ["alertname=BlockedShareHigh"]
    assert {m.label: m.value for m in at.metric}["Silences"] == "1"


def test_alerts_board_reads_per_refresh(svc):
    svc.alerts.add(1, "firing", "PaymentSuccessLow")
    svc.alerts.reads = 0
    board = svc.alerts_board()
    assert board.calls == svc.alerts.reads == 3
    assert [a["rule"] for a in board.firing] == ["PaymentSuccessLow"]


def test_live_refreshes_accumulate_nothing_in_session_state(page, svc, metrics, clock):
    s = int(clock.now().timestamp()) - 20
    metrics.write([order_point(s, placed=3, paid=3, gmv=10.0), resource_point(s, "order.place", passed=3)])
    at = page("overview")
    keys = set(at.session_state.keys())
    metrics.queries = 0
    for _ in range(8):
        at.run()
    assert not at.exception
    assert set(at.session_state.keys()) == keys == {"overview_range"}
    assert metrics.queries == 8 * 13  # the stated budget per refresh, exactly
