"""An alert's proposed fix applied from the alert detail in a real browser (chromium through
playwright) against a console on SQLite: the guardian rules in force change, the version's why and
the alert's timeline name the alert; resolving the alert restores the rules it replaced. Screenshots
go to ``artifacts/console-screenshots/alert-proposal-*.png``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.engine import ensure_default_rules
from alerts.model import fingerprint
from alerts.store import AlertRecord, AlertStore
from guardians.store import RuleStore
from tests.e2e.console_stack import (
    SRE,
    Procs,
    add_users,
    artifacts_dir,
    clean_env,
    seed,
    sign_in,
    start_console,
    wait_for,
)

pytestmark = pytest.mark.e2e
APP = "tradeguard"


def _firing(store: AlertStore, rule: str) -> int:
    now = datetime.now(UTC)
    full = {"alertname": rule, "severity": "critical", "app": APP}
    rec = AlertRecord(
        id=0, fingerprint=fingerprint(full), rule=rule, labels=full,
        annotations={"summary": f"{rule} (e2e)"}, severity="critical", state="firing",
        active_since=now - timedelta(seconds=90), value=0.76, fired_at=now - timedelta(seconds=30),
        last_true_at=now,
    )
    return store.insert_alert(rec).id


def test_apply_the_payment_alerts_proposal_then_revert_on_resolve(tmp_path, browser):
    env = clean_env(tmp_path)
    seed(env, tmp_path)
    control = f"sqlite:///{tmp_path / 'var' / 'control.db'}"
    store = AlertStore(control)
    guard = RuleStore(control)
    ensure_default_rules(store, datetime.now(UTC))
    before = guard.current(APP)
    v0 = before.version if before else 0
    pay = _firing(store, "PaymentSuccessRateLow")
    add_users(tmp_path / "var", {SRE: ("sre", ())})
    procs = Procs(tmp_path, env)
    shots = artifacts_dir()
    try:
        url = start_console(procs)
        with browser.new_context(viewport={"width": 1600, "height": 1000}) as ctx:
            page = ctx.new_page()
            sign_in(page, url, SRE, path="alerts")
            page.get_by_role("heading", name="Alerts").first.wait_for(timeout=30_000)
            apply = page.get_by_role("button", name=f"Apply proposal of #{pay} PaymentSuccessRateLow")
            apply.wait_for(timeout=20_000)
            page.get_by_text("Proposed fix").first.wait_for(timeout=10_000)
            page.get_by_text(f"Signed in as {SRE}").first.wait_for(timeout=10_000)  # no name to type
            page.wait_for_timeout(500)
            apply.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "alert-proposal-preview.png"), full_page=True)
            apply.click()
            page.get_by_text(f"Proposal of alert #{pay} PaymentSuccessRateLow applied by {SRE}").wait_for(
                timeout=20_000
            )
            cur = guard.current(APP)
            assert cur is not None and cur.version == v0 + 1 and cur.created_by == SRE
            assert f"proposal of alert #{pay} PaymentSuccessRateLow" in cur.why
            assert {r["resource"]: r["fallback"] for r in cur.document["degrade"]}["payment.charge"] == (
                "queue_payment"
            )
            assert any(e["kind"] == "proposal_applied" and e["by"] == SRE for e in store.events(pay))
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / "alert-proposal-applied.png"), full_page=True)
            applied = page.get_by_text(f"Applied by {SRE} as rules").first
            applied.wait_for(timeout=10_000)
            applied.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "alert-proposal-applied-block.png"), full_page=True)
            # resolve it by hand: the rules the proposal replaced come back
            page.get_by_role("button", name=f"Resolve #{pay}").click()
            wait_for(lambda: guard.current(APP).version == v0 + 2, 20, "the revert on resolve")
            cur = guard.current(APP)
            kept = {k: v for k, v in (before.document if before else {}).items() if v}
            assert {k: v for k, v in cur.document.items() if v} == kept
            assert f"alert #{pay}" in cur.why
            assert store.events(pay)[-1]["kind"] == "proposal_reverted"
    finally:
        procs.stop_all()
        guard.close()
        store.close()
