"""Applying an alert's proposal to the guardian rules in force, refusals, and revert on resolve
(through the real evaluator and by hand), on the real SQLite alert store and guardian rule store."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from alerts.engine import AlertEngine
from alerts.errors import InvalidAction
from alerts.proposal import ProposalError
from alerts.rulefile import load_text, rule_to_dict
from alerts.service import AlertService
from alerts.store import AlertStore
from common.identity import Forbidden, Principal
from guardians.store import RuleStore
from tests.unit.alerts.fakes import FakeClock, FakeMetricStore

APP = "shop"
DOC = """
rules:
  - name: PayErrors
    query: {measurement: payments, field: failure, aggregate: sum, window: 1m, group_by: [app]}
    op: ">"
    threshold: 5
    for: 0s
    severity: critical
    proposal:
      action: degrade
      resource: payment.charge
      fallback: queue_payment
      revert_on_resolve: true
      summary: pay later
  - name: SlowOrders
    query: {measurement: payments, field: slow, aggregate: sum, window: 1m, group_by: [app]}
    op: ">"
    threshold: 5
    for: 0s
    proposal: {action: set_flow, resource: "POST /orders", grade: concurrency, threshold: 40}
  - name: NoProposal
    query: {measurement: payments, field: other, aggregate: sum, window: 1m, group_by: [app]}
    op: ">"
    threshold: 5
    for: 0s
"""
BEFORE = {"flow": [{"resource": "order.place", "threshold": 100}]}


@pytest.fixture
def env(tmp_path):
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/control.db"
    metrics = FakeMetricStore()
    store = AlertStore(url)
    guard = RuleStore(url, clock=clock)
    guard.apply(APP, BEFORE, "alice", "baseline")
    engine = AlertEngine(store, metrics, clock=clock, guard_rules=guard, guard_app=APP)
    service = AlertService(store, clock=clock, guard_rules=guard, guard_app=APP)
    service.apply(DOC, by="test")
    yield SimpleNamespace(
        clock=clock, metrics=metrics, store=store, guard=guard, engine=engine, service=service
    )
    guard.close()
    store.close()


RULE_OF = {"failure": "PayErrors", "slow": "SlowOrders", "other": "NoProposal"}


def fire(env, field: str = "failure", n: int = 20) -> int:
    env.metrics.add("payments", {"app": APP}, {field: n}, env.clock.now() - timedelta(seconds=1))
    env.engine.evaluate()
    open_ = [a for a in env.service.list_alerts() if a["state"] == "firing" and a["rule"] == RULE_OF[field]]
    assert open_, "the alert should fire"
    return open_[0]["id"]


def test_proposal_round_trips_through_the_rule_file() -> None:
    rules = {r.name: r for r in load_text(DOC).rules or ()}
    d = rule_to_dict(rules["PayErrors"])
    assert d["proposal"]["fallback"] == "queue_payment" and d["proposal"]["revert_on_resolve"] is True
    again = load_text(__import__("yaml").safe_dump({"rules": [d]})).rules
    assert again is not None and again[0].proposal == rules["PayErrors"].proposal
    assert rule_to_dict(rules["NoProposal"]).get("proposal") is None


def test_the_stored_rule_knows_its_proposal(env) -> None:
    docs = {d["name"]: d for d in env.store.rule_documents()}
    assert docs["SlowOrders"]["proposal"]["threshold"] == 40
    rule = {r.name: r for r in env.engine.evaluator.rules()}["PayErrors"]
    assert rule.proposal is not None and rule.proposal.fallback == "queue_payment"


def test_apply_changes_the_rules_in_force_audited_with_the_alert(env) -> None:
    aid = fire(env)
    plan = env.service.proposal_plan(aid)
    assert plan["rules_version"] == 1 and plan["changes"]
    out = env.service.apply_proposal(
        aid, principal=Principal("sam", "sre"), expected_rules_version=plan["rules_version"]
    )
    cur = env.guard.current(APP)
    assert out["version"] == cur.version == 2
    assert [r["fallback"] for r in cur.document["degrade"]] == ["queue_payment"]
    assert cur.document["flow"][0]["resource"] == "order.place"  # the rest kept
    assert cur.created_by == "sam" and f"proposal of alert #{aid} PayErrors" in cur.why
    ev = [e for e in env.service.timeline(aid)["events"] if e["kind"] == "proposal_applied"]
    assert len(ev) == 1 and ev[0]["by"] == "sam" and "v1 → v2" in ev[0]["detail"]


def test_revert_on_resolve_by_the_evaluator(env) -> None:
    aid = fire(env)
    env.service.apply_proposal(aid, "sam", expected_rules_version=1)
    env.clock.advance(120)  # no more failures: the condition clears, the alert resolves
    env.engine.evaluate()
    assert env.store.get_alert(aid).state == "resolved"
    cur = env.guard.current(APP)
    assert cur.version == 3 and cur.restored_from == 1
    assert cur.document == env.guard.version(APP, 1).document
    assert f"alert #{aid}" in cur.why
    kinds = [e["kind"] for e in env.service.timeline(aid)["events"]]
    assert kinds[-1] == "proposal_reverted"


def test_revert_on_manual_resolve(env) -> None:
    aid = fire(env)
    env.service.apply_proposal(aid, "sam")
    env.service.resolve(aid, "olga", "gateway back")
    cur = env.guard.current(APP)
    assert cur.document == env.guard.version(APP, 1).document and cur.created_by == "olga"


def test_no_revert_unless_asked(env) -> None:
    aid = fire(env, "slow")
    env.service.apply_proposal(aid, "sam")
    env.service.resolve(aid, "olga")
    cur = env.guard.current(APP)
    assert cur.version == 2
    assert {r["grade"]: r["threshold"] for r in cur.document["flow"] if r["resource"] == "POST /orders"} == {
        "concurrency": 40
    }


def test_no_revert_when_the_rules_changed_since_and_the_alert_says_why(env) -> None:
    aid = fire(env)
    env.service.apply_proposal(aid, "sam")
    env.guard.apply(APP, {**env.guard.current(APP).document, "system": []} | {"flow": []}, "bob", "hand edit")
    env.service.resolve(aid, "olga")
    assert env.guard.current(APP).version == 3  # bob's stays
    last = env.service.timeline(aid)["events"][-1]
    assert last["kind"] == "proposal_not_reverted"
    assert "v3 is in force" in last["detail"] and "bob" in last["detail"] and "v2" in last["detail"]


def test_refused_without_permission(env) -> None:
    aid = fire(env)
    with pytest.raises(Forbidden, match=r"user olga \(oncall\) may not apply rules; needs role sre or admin"):
        env.service.apply_proposal(aid, principal=Principal("olga", "oncall"), expected_rules_version=1)
    assert env.guard.current(APP).version == 1


def test_refused_when_stale(env) -> None:
    aid = fire(env)
    env.guard.apply(APP, {"flow": [{"resource": "order.place", "threshold": 50}]}, "bob", "tighter")
    stale = r"expected_rules_version: stale proposal.*you saw v1; v2 is in force"
    with pytest.raises(ProposalError, match=stale):
        env.service.apply_proposal(aid, "sam", expected_rules_version=1)
    assert env.guard.current(APP).version == 2


def test_refused_when_invalid_naming_the_field(env) -> None:
    aid = fire(env)
    doc = {d["name"]: d for d in env.store.rule_documents()}["PayErrors"]
    doc["proposal"]["fallback"] = "bad name!"
    env.store.replace_rules([doc], by="test", now=env.clock.now())
    with pytest.raises(ProposalError, match=r"invalid proposal: degrade\[0\]\.fallback"):
        env.service.apply_proposal(aid, "sam", expected_rules_version=1)
    assert env.guard.current(APP).version == 1


def test_refused_without_a_proposal_twice_or_closed(env) -> None:
    aid = fire(env, "other")
    with pytest.raises(ProposalError, match="proposal: alert rule NoProposal carries no proposal"):
        env.service.apply_proposal(aid, "sam")
    pay = fire(env)
    env.service.apply_proposal(pay, "sam")
    with pytest.raises(ProposalError, match=r"already contain it"):
        env.service.apply_proposal(pay, "sam")
    env.service.resolve(pay, "sam")
    with pytest.raises(InvalidAction, match="is resolved"):
        env.service.apply_proposal(pay, "sam")
