"""The Alert rules page through ``streamlit.testing.v1.AppTest``: create, edit, refuse an invalid rule,
back-test, disable, delete, history and rollback — over a real ``AlertService`` (control DB in tmp_path)
and the embedded metric store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alerts.service import AlertService
from alerts.store import AlertStore
from collectors.points import make_point
from common.identity import Principal
from console.services import AlertRuleRefused, ConsoleServices

from .fakes import FakeChaos, FakeFleet, FakeRuleStore

PAGE = Path(__file__).resolve().parents[3] / "console" / "views" / "alert_rules.py"
TIMEOUT = 60


@pytest.fixture
def alert_svc(tmp_path, metrics, clock):
    store = AlertStore(f"sqlite:///{tmp_path}/control.db")
    svc = AlertService(store, clock=clock, metrics=metrics)
    yield svc
    store.close()


@pytest.fixture
def console(metrics, clock, alert_svc):
    return ConsoleServices(
        app="shop",
        metrics=metrics,
        rules=FakeRuleStore(),
        fleet=FakeFleet(),
        chaos=FakeChaos(),
        alerts=alert_svc,
        clock=clock,
    )


@pytest.fixture
def page(monkeypatch, console):
    # the page runs as a signed-in on-call engineer: the audit records that name
    user = console.as_user(Principal("olga", "oncall", ()))
    monkeypatch.setattr("console.runtime.services", lambda: user)

    def open_page() -> AppTest:
        at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return open_page


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _rule(name: str = "Errors", threshold: float = 50) -> dict:
    return {
        "name": name,
        "query": {
            "measurement": "resource_stats",
            "field": "error",
            "aggregate": "sum",
            "window": "1m",
            "group_by": ["resource"],
        },
        "op": ">",
        "threshold": threshold,
        "for": "0s",
        "severity": "warning",
    }


def _yaml_area(at: AppTest):
    return next(t for t in at.text_area if t.label == "Rule (YAML)")


def test_create_in_the_form_refuses_a_bad_field_then_saves_a_version(page, alert_svc):
    at = page()
    assert "No alert rules yet" in _texts(at.info)
    at.text_input(key=next(w.key for w in at.text_input if w.label == "name *")).set_value("ErrorsHigh")
    th = next(w for w in at.text_input if w.label == "threshold *")
    th.set_value("lots").run()
    assert not at.exception
    assert "`rule.threshold`" in _texts(at.error)  # refused whole, naming the field
    next(w for w in at.text_input if w.label == "threshold *").set_value("5").run()
    assert "`rule.threshold`" not in _texts(at.error)
    assert "+name: ErrorsHigh" in _texts(at.code)  # the diff against no rule in force
    assert alert_svc.rules() == []  # nothing saved before the click
    at.text_input(key="ar_edit_why").set_value("errors page us")
    at.button(key="ar_save").click().run()
    assert not at.exception
    assert "Rule ErrorsHigh saved by olga: alert rules version 1" in _texts(at.success)
    (stored,) = alert_svc.rules()
    assert stored["name"] == "ErrorsHigh" and stored["threshold"] == 5.0
    hist = alert_svc.rule_history()
    assert hist[0]["created_by"] == "olga" and hist[0]["why"] == "errors page us"
    assert at.selectbox(key="ar_edit_pick").value == "ErrorsHigh"


def test_yaml_edit_refuses_an_invalid_rule_whole_and_shows_the_diff(page, alert_svc):
    alert_svc.apply({"rules": [_rule()]}, by="ann", why="setup")
    at = page()
    at.selectbox(key="ar_edit_pick").set_value("Errors").run()
    # the rule in force, unedited: no diff (the store's defaults, enabled: true, are no change)
    assert "No change: the rule in force is identical." in _texts(at.caption)
    assert "(proposed)" not in _texts(at.code)
    at.segmented_control(key="ar_mode").set_value("YAML").run()
    area = _yaml_area(at)
    bad = area.value.replace("aggregate: sum", "aggregate: median").replace("threshold: 50", "threshold: 80")
    area.set_value(bad).run()
    assert "`rule.query.aggregate`" in _texts(at.error)
    assert not any(b.key == "ar_save" for b in at.button)  # nothing to save while invalid
    assert alert_svc.rules()[0]["threshold"] == 50
    _yaml_area(at).set_value(bad.replace("aggregate: median", "aggregate: max")).run()
    diff = _texts(at.code)
    assert "-  aggregate: sum" in diff and "+  aggregate: max" in diff
    assert "-threshold: 50" in diff and "+threshold: 80" in diff
    at.button(key="ar_save").click().run()
    assert "version 2" in _texts(at.success)
    assert alert_svc.rules()[0]["query"]["aggregate"] == "max"


def test_backtest_shows_proposed_against_the_rule_in_force(page, alert_svc, metrics, clock):
    now = clock.now()
    points = []
    for s in range(1, 3600):
        t = now - timedelta(seconds=s)
        err = 3.0 if 600 <= s < 1200 else 0.0
        points.append(
            make_point(
                "resource_stats",
                {"app": "shop", "instance": "n1", "resource": "order.pay"},
                {"error": err},
                t,
            )
        )
    metrics.write(points)
    alert_svc.apply({"rules": [_rule(threshold=500)]}, by="ann", why="setup")
    at = page()
    at.selectbox(key="ar_edit_pick").set_value("Errors").run()
    next(w for w in at.text_input if w.label == "threshold *").set_value("100").run()
    at.selectbox(key="ar_bt_hours").set_value(1)
    at.button(key="ar_bt_run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    metric = {m.label: m.value for m in at.metric}
    assert metric["Proposed: fired"] == "1"  # 180 errors a minute > 100 …
    assert metric["In force: fired"] == "0"  # … but never > 500
    assert len(at.get("plotly_chart")) == 1
    events = next(d.value for d in at.dataframe if "transition" in d.value.columns)
    assert list(events["transition"]) == ["firing", "resolved"]


def test_disable_delete_history_and_rollback(page, alert_svc, console):
    alert_svc.apply({"rules": [_rule("A"), _rule("B")]}, by="ann", why="setup")
    at = page()
    at.selectbox(key="ar_list_pick").set_value("A")
    at.button(key="ar_toggle").click().run()
    assert "Rule A disabled by olga" in _texts(at.success)
    assert {r["name"]: r.get("enabled", True) for r in alert_svc.rules()} == {"A": False, "B": True}
    at.selectbox(key="ar_list_pick").set_value("B")
    at.button(key="ar_delete").click().run()
    assert [r["name"] for r in alert_svc.rules()] == ["A"]
    hist = next(d.value for d in at.dataframe if "restored from" in d.value.columns)
    assert list(hist["version"]) == [3, 2, 1]
    assert list(hist["by"]) == ["olga", "olga", "ann"]
    at.selectbox(key="ar_hist_pick").set_value(1).run()
    at.text_input(key="ar_rb_why").set_value("B is needed")
    at.button(key="ar_rollback").click().run()
    assert not at.exception
    assert "Rolled back to version 1 by olga: version 4 is in force" in _texts(at.success)
    assert {r["name"]: r.get("enabled", True) for r in alert_svc.rules()} == {"A": True, "B": True}
    assert alert_svc.rule_history()[0]["restored_from"] == 1
    hist = next(d.value for d in at.dataframe if "restored from" in d.value.columns)
    assert list(hist["restored from"]) == ["1", "", "", ""]
    assert "~ B" not in _texts(at.code) and "+ B" in _texts(at.code)  # version 4 brought B back


def test_save_refuses_a_duplicate_name_and_keeps_the_store(console, alert_svc):
    alert_svc.apply({"rules": [_rule("A")]}, by="ann")
    with pytest.raises(AlertRuleRefused) as err:
        console.alert_rule_save(_rule("A", 1), by="bob", why="")
    assert err.value.errors[0].path == "rule.name"
    out = console.alert_rule_save(_rule("A2", 7), by="bob", why="rename", original="A")
    assert [r["name"] for r in alert_svc.rules()] == ["A2"] and out["version"] == 2
    console.alert_rule_save(_rule("A2", 9), by="bob", why=" ", original="A2")
    assert alert_svc.rule_history()[0]["why"] == "rule A2 edited in the console"  # never blank
