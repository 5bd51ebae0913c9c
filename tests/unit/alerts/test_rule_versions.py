"""Alert rules are versioned and audited: apply, enable/disable, delete and rollback each make a version."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.errors import AlertConfigError, NotFound
from alerts.service import AlertService
from alerts.store import AlertStore
from tests.unit.alerts.fakes import FakeClock, FakeMetricStore


def rule(name: str, threshold: float = 10, **kw) -> dict:
    return {
        "name": name,
        "query": {"measurement": "resource_stats", "field": "error", "aggregate": "sum", "window": "1m"},
        "op": ">",
        "threshold": threshold,
        "for": "0s",
        **kw,
    }


@pytest.fixture
def svc(tmp_path):
    clock = FakeClock()
    store = AlertStore(f"sqlite:///{tmp_path}/control.db")
    s = AlertService(store, clock=clock, metrics=FakeMetricStore())
    yield s
    store.close()


def test_every_change_is_a_version_with_who_why_and_diff(svc):
    r1 = svc.apply({"rules": [rule("A"), rule("B")]}, by="alice", why="first rules")
    assert r1["version"] == 1
    svc.clock.advance(60)
    r2 = svc.apply({"rules": [rule("A", 20)]}, by="bob", why="raise A")
    assert r2["version"] == 2
    again = svc.apply({"rules": [rule("A", 20)]}, by="bob", why="no change")
    assert again["version"] == 2  # an unchanged rule set makes no version
    svc.set_rule_enabled("B", False, by="carol")
    svc.delete_rule("A", by="dave", why="A is noisy")
    hist = svc.rule_history()
    assert [h["version"] for h in hist] == [4, 3, 2, 1]
    assert [h["created_by"] for h in hist] == ["dave", "carol", "bob", "alice"]
    assert hist[0]["why"] == "A is noisy"
    assert [d["name"] for d in hist[0]["diff"]["removed"]] == ["A"]
    changed = hist[2]["diff"]["changed"]
    assert changed[0]["name"] == "A" and changed[0]["before"]["threshold"] == 10
    assert changed[0]["after"]["threshold"] == 20
    assert hist[1]["diff"]["changed"][0]["after"]["enabled"] is False
    assert hist[2]["created_at"] > hist[3]["created_at"]


def test_rollback_restores_an_old_rule_set_as_a_new_version(svc):
    svc.apply({"rules": [rule("A"), rule("B")]}, by="alice", why="v1")
    svc.apply({"rules": [rule("A", 99), rule("C")]}, by="bob", why="v2", prune=True)
    assert {r["name"] for r in svc.rules()} == {"A", "C"}
    out = svc.rollback_rules(1, by="carol", why="v2 was wrong")
    assert out["version"] == 3 and out["restored_from"] == 1 and out["created_by"] == "carol"
    rules = {r["name"]: r for r in svc.rules()}
    assert set(rules) == {"A", "B"} and rules["A"]["threshold"] == 10
    assert [d["name"] for d in out["diff"]["removed"]] == ["C"]
    with pytest.raises(NotFound, match="version"):
        svc.rollback_rules(42, by="carol")
    with pytest.raises(AlertConfigError, match="by"):
        svc.rollback_rules(1, by=" ")


def test_an_invalid_rule_is_refused_whole_and_makes_no_version(svc):
    svc.apply({"rules": [rule("A")]}, by="alice")
    with pytest.raises(AlertConfigError) as err:
        svc.apply({"rules": [rule("B"), rule("C", op="=>")]}, by="bob")
    assert any(path == "rules[1].op" for path, _ in err.value.errors)
    assert {r["name"] for r in svc.rules()} == {"A"}
    assert len(svc.rule_history()) == 1


def test_backtest_compares_the_proposed_rule_with_the_rule_in_force(svc):
    t0 = svc.clock.now()
    for s in range(0, 1800):
        t = t0 - timedelta(seconds=1800 - s)
        err = 2.0 if 600 <= s < 900 else 0.0
        svc.metrics.add("resource_stats", {"app": "shop", "resource": "x"}, {"error": err}, t)
    svc.apply({"rules": [rule("A", threshold=200)]}, by="alice")
    out = svc.backtest(rule("A", threshold=60), start=t0 - timedelta(minutes=30), end=t0)
    assert out["current"]["counts"]["firing"] == 0  # 120 per minute never exceeds 200
    assert out["proposed"]["counts"]["firing"] == 1 and out["proposed"]["counts"]["resolved"] == 1
    assert out["proposed"]["threshold"] == 60 and out["steps"] == 181
    with pytest.raises(AlertConfigError) as err:
        svc.backtest(rule("A", threshold="high"))
    assert err.value.errors[0][0] == "rule.threshold"


def test_the_installed_defaults_are_version_1_so_a_first_edit_shows_only_itself(svc):
    from alerts.engine import ensure_default_rules

    assert ensure_default_rules(svc.store, svc.clock.now())
    [v1] = svc.rule_history()
    assert v1["version"] == 1 and v1["created_by"] == "tradeguard (defaults)"
    assert v1["why"] == "default alert rules installed" and v1["rules"] == len(svc.rules()) > 1
    first = svc.store.rule_documents()[0]
    svc.clock.advance(60)
    svc.apply({"rules": [{**first, "threshold": first["threshold"] * 2}]}, by="alice", why="double it")
    v2 = svc.rule_history()[0]
    assert v2["version"] == 2
    assert [c["name"] for c in v2["diff"]["changed"]] == [first["name"]]
    assert v2["diff"]["added"] == [] and v2["diff"]["removed"] == []
    assert not ensure_default_rules(svc.store, svc.clock.now())  # installed once only
