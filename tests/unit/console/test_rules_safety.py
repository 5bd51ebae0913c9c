"""Rules page safety: known resources with a warning for unknown ones, only the fields that apply,
and a rollback that diffs against the rules in force and cannot make two versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from common.identity import Principal
from console.rule_forms import OTHER_RESOURCE, hidden_fields, resource_options, unknown_resource_warning

from .points import resource_point

CONSOLE = Path(__file__).resolve().parents[3] / "console"


@pytest.fixture
def page(monkeypatch, svc):
    monkeypatch.setattr("console.runtime.services", lambda: svc.as_user(Principal("carol", "sre")))

    def open_page() -> AppTest:
        at = AppTest.from_file(str(CONSOLE / "views" / "rules.py"), default_timeout=30)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return open_page


def _widgets(at: AppTest):
    return (*at.number_input, *at.text_input, *at.selectbox, *at.checkbox)


def _widget(at: AppTest, key: str):
    return next((w for w in _widgets(at) if w.key == key), None)


def _keys(at: AppTest) -> set[str]:
    return {w.key for w in _widgets(at) if w.key}


def test_known_resources_are_the_cores_and_the_recorded(svc, metrics, clock):
    s = int(clock.now().timestamp()) - 30
    metrics.write([resource_point(s, "GET /products", passed=3)])
    known = svc.known_resources()
    assert {"order.place", "payment.charge", "inventory.reserve", "GET /products"} <= set(known)
    assert resource_options(known, "legacy.thing")[-2:] == ["legacy.thing", OTHER_RESOURCE]
    assert unknown_resource_warning("order.place", known) is None
    warning = unknown_resource_warning("order.plcae", known)
    assert warning and "not a known resource" in warning and "`order.place`" in warning


def test_fields_follow_the_models_rules_between_fields():
    assert {"warm_up_s", "max_queue_ms", "ref_resource", "origin", "algorithm"} <= hidden_fields("flow", {})
    assert "warm_up_s" not in hidden_fields("flow", {"behavior": "warm_up"})
    relate = hidden_fields("flow", {"strategy": "relate"})
    assert "ref_resource" not in relate and "behavior" in relate  # relate: behavior must be reject
    assert "max_rt_ms" in hidden_fields("breaker", {"strategy": "error_ratio"})
    assert "max_rt_ms" not in hidden_fields("breaker", {"strategy": "slow_ratio"})
    assert "strategy" in hidden_fields("system", {"metric": "qps"})
    assert "strategy" not in hidden_fields("system", {"metric": "cpu"})


def test_form_offers_known_resources_and_warns_on_a_typo(page, svc):
    at = page()
    gen = at.session_state["rules_gen"]
    pick = at.selectbox(key=f"fld_flow_-1_{gen}_resource")
    assert "order.place" in pick.options and pick.options[-1] == OTHER_RESOURCE
    pick.set_value(OTHER_RESOURCE).run()
    at.text_input(key=f"fld_flow_-1_{gen}_resource_other").set_value("order.plcae").run()
    assert not at.exception
    warnings = "\n".join(w.value for w in at.warning)
    assert "`order.plcae` is not a known resource" in warnings and "`order.place`" in warnings
    _widget(at, f"fld_flow_-1_{gen}_threshold").set_value(10)
    at.button(key=f"FormSubmitter:rule_form_flow_-1_{gen}-Save to draft & validate").click().run()
    assert not at.exception
    assert at.session_state["rules_draft"]["flow"][0]["resource"] == "order.plcae"
    assert any("order.plcae" in w.value for w in at.warning)  # the Review tab warns too


def test_form_shows_only_the_fields_that_apply(page):
    at = page()
    gen = at.session_state["rules_gen"]

    def key(name: str) -> str:
        return f"fld_flow_-1_{gen}_{name}"

    keys = _keys(at)
    assert key("threshold") in keys and key("warm_up_s") not in keys and key("ref_resource") not in keys
    at.selectbox(key=key("behavior")).set_value("warm_up").run()
    keys = _keys(at)
    assert key("warm_up_s") in keys and key("cold_factor") in keys and key("max_queue_ms") not in keys
    at.selectbox(key=key("behavior")).set_value("reject").run()
    at.selectbox(key=key("strategy")).set_value("relate").run()
    keys = _keys(at)
    assert key("ref_resource") in keys and key("behavior") not in keys and key("warm_up_s") not in keys
    assert any("do not apply" in c.value for c in at.caption)


def test_rollback_diffs_against_the_rules_in_force_and_makes_one_version(page, svc):
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 50}]}, "ann", "baseline")
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 5}]}, "bob", "sale")
    at = page()
    at.selectbox(key="history_pick").set_value(1).run()
    diff = next(c.value for c in at.code if "(restored)" in c.value)
    assert "version 2 (in force)" in diff and "threshold: 5" in diff and "threshold: 50" in diff
    assert any("Impact preview of the restored rules" in m.value for m in at.markdown)  # before the click
    at.text_input(key="rollback_why").set_value("sale over")
    at.button(key="FormSubmitter:rollback_form-Roll back to version 1").click().run()
    assert not at.exception
    assert [v.version for v in svc.history()] == [3, 2, 1]
    assert svc.history()[0].by == "carol"  # the signed-in user
    assert at.selectbox(key="history_pick").value == 3  # the picker shows the version in force
    assert not any(b.key == "FormSubmitter:rollback_form-Roll back to version 1" for b in at.button)
    # a second click: version 1 picked again, its rules are in force, the form is cleared and off
    at.selectbox(key="history_pick").set_value(1).run()
    assert at.text_input(key="rollback_why").value == ""
    assert any("nothing to roll back" in i.value for i in at.info)
    assert at.button(key="FormSubmitter:rollback_form-Roll back to version 1").disabled
    assert [v.version for v in svc.history()] == [3, 2, 1]  # one new version


def test_rollback_offered_before_another_change_is_refused(page, svc):
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 50}]}, "ann", "baseline")
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 5}]}, "bob", "sale")
    at = page()
    at.selectbox(key="history_pick").set_value(1).run()
    at.text_input(key="rollback_why").set_value("sale over")
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 7}]}, "dan", "meanwhile")
    at.button(key="FormSubmitter:rollback_form-Roll back to version 1").click().run()
    assert not at.exception
    assert any("Not rolled back" in e.value for e in at.error)
    assert svc.rules_in_force().version == 3 and svc.rules_in_force().by == "dan"
