"""The alert detail's proposed fix, over the real alert service, alert store and guardian rule store
(SQLite): applying it changes the rules in force, audited with the alert id; resolving reverts it;
each refusal (role, stale rules, invalid proposal) is a clear message."""

from __future__ import annotations

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
from guardians.store import RuleStore

from .fakes import FakeChaos, FakeClock, FakeFleet
from .points import resource_point

PAGE = Path(__file__).resolve().parents[3] / "console" / "views" / "alerts_page.py"
BASELINE = {
    "flow": [{"resource": "POST /orders", "grade": "concurrency", "threshold": 100}],
    "degrade": [{"resource": "payment.charge", "fallback": "default"}],
}


@pytest.fixture
def env(tmp_path, metrics, monkeypatch):
    clock = FakeClock()
    url = f"sqlite:///{tmp_path / 'control.db'}"
    store = AlertStore(url)
    guard = RuleStore(url, clock=clock)
    guard.apply("shop", BASELINE, "alice", "baseline")
    alerts = AlertService(store, clock=clock, metrics=metrics, guard_rules=guard, guard_app="shop")
    ensure_default_rules(store, clock.now())
    svc = ConsoleServices(
        app="shop", metrics=metrics, rules=guard, fleet=FakeFleet(), chaos=FakeChaos(), alerts=alerts,
        clock=clock,
    )
    monkeypatch.setattr("console.runtime._installed", svc)  # pages get it bound to the signed-in user
    yield store, guard, clock, metrics
    guard.close()
    store.close()


def add(store: AlertStore, clock, rule: str, **labels: str) -> int:
    full = {"alertname": rule, "severity": "critical", "app": "shop", **labels}
    rec = AlertRecord(
        id=0, fingerprint=fingerprint(full), rule=rule, labels=full, annotations={"summary": rule},
        severity="critical", state="firing", active_since=clock.now() - timedelta(seconds=90), value=0.7,
        fired_at=clock.now() - timedelta(seconds=30), last_true_at=clock.now(),
    )
    return store.insert_alert(rec).id


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


SRE = Principal("sam", "sre")


def page(alert_id: int, principal: Principal = SRE) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=30)
    at.session_state["tg_principal"] = principal
    at.run()
    at.selectbox(key="alert_pick").set_value(alert_id).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def apply_button(at: AppTest, alert_id: int):
    return next(b for b in at.button if b.label.startswith(f"Apply proposal of #{alert_id} "))


def test_apply_from_the_alert_detail_then_reverted_on_resolve(env):
    store, guard, _, _ = env
    aid = add(store, env[2], "PaymentSuccessRateLow")
    at = page(aid)
    assert "**Proposed fix** — degrade payment.charge: fallback queue_payment" in texts(at.markdown)
    diff = texts(at.code)
    assert "+  fallback: queue_payment" in diff and "-  fallback: default" in diff
    assert apply_button(at, aid).label == f"Apply proposal of #{aid} PaymentSuccessRateLow"
    apply_button(at, aid).click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert f"Proposal of alert #{aid} PaymentSuccessRateLow applied by sam: rules v2" in texts(at.success)
    cur = guard.current("shop")
    assert cur.version == 2 and cur.created_by == "sam"
    assert f"proposal of alert #{aid} PaymentSuccessRateLow" in cur.why
    assert [r["fallback"] for r in cur.document["degrade"]] == ["queue_payment"]
    assert cur.document["flow"] == guard.version("shop", 1).document["flow"]
    events = {e["kind"]: e for e in store.events(aid)}
    assert events["proposal_applied"]["by"] == "sam" and "v1 → v2" in events["proposal_applied"]["detail"]
    # the block now says it is applied and in force; the button is off
    assert "Applied by **sam** as rules **v2**" in texts(at.info)
    assert apply_button(at, aid).disabled
    # resolving it from the same page restores the rules it replaced (revert_on_resolve)
    next(b for b in at.button if b.label == f"Resolve #{aid}").click().run()
    assert not at.exception
    cur = guard.current("shop")
    assert cur.version == 3 and cur.document == guard.version("shop", 1).document
    assert f"alert #{aid}" in cur.why
    assert store.events(aid)[-1]["kind"] == "proposal_reverted"


def test_a_role_that_may_not_apply_rules_sees_the_button_off_with_the_reason(env):
    store, guard, clock, _ = env
    aid = add(store, clock, "PaymentSuccessRateLow")
    at = page(aid, Principal("olga", "oncall"))
    button = apply_button(at, aid)
    assert button.disabled
    assert "you are signed in as olga (oncall): applying rules needs role sre or admin" in texts(at.caption)
    assert guard.current("shop").version == 1
    at = page(aid, Principal("sam", "sre"))
    assert not apply_button(at, aid).disabled
    apply_button(at, aid).click().run()
    assert guard.current("shop").created_by == "sam"


def test_rules_changed_after_the_preview_are_refused_as_stale(env):
    store, guard, clock, _ = env
    aid = add(store, clock, "PaymentSuccessRateLow")
    at = page(aid)
    guard.apply("shop", {**BASELINE, "flow": []}, "bob", "drop the orders limit")  # meanwhile
    apply_button(at, aid).click().run()
    assert not at.exception
    error = texts(at.error)
    assert "stale proposal" in error and "you saw v1; v2 is in force, by bob: drop the orders limit" in error
    assert guard.current("shop").version == 2  # bob's change stands
    # the page now previews against v2; applying again is the person's informed choice
    assert "Diff against the rules in force (v2)" in texts(at.markdown)
    apply_button(at, aid).click().run()
    assert guard.current("shop").version == 3 and not guard.current("shop").document.get("flow")


def test_an_invalid_proposal_names_the_field_and_cannot_be_applied(env):
    store, guard, clock, _ = env
    doc = {d["name"]: d for d in store.rule_documents()}["PaymentSuccessRateLow"]
    doc["proposal"]["fallback"] = "pay later!"
    store.replace_rules([doc], by="test", now=clock.now())
    aid = add(store, clock, "PaymentSuccessRateLow")
    at = page(aid)
    assert "Invalid proposal: invalid proposal: degrade[0].fallback" in texts(at.error)
    assert apply_button(at, aid).disabled
    assert guard.current("shop").version == 1


def test_latency_proposal_previews_its_impact_on_recorded_traffic(env):
    store, _, clock, metrics = env
    now = int(clock.now().timestamp())
    # 60 calls/s at 1 s each: ~60 concurrent calls per node; the proposal allows 40
    metrics.write([resource_point(now - k, "POST /orders", passed=60, rt=1000.0) for k in range(1, 121)])
    aid = add(store, clock, "OrderPlaceLatencyHigh", resource="order.place", instance="n1")
    at = page(aid)
    assert "set_flow POST /orders: concurrency limit 40" in texts(at.markdown)
    caption = texts(at.caption)
    assert "would block 2,400 of 7,200 calls (33.3 %)" in caption, caption
    assert "-  threshold: 100" in texts(at.code) and "+  threshold: 40" in texts(at.code)
