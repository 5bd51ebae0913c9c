"""An alert's proposed fix applied from the alert detail in a real browser (chromium through
playwright) against a console on SQLite: the guardian rules in force change, the version's why and
the alert's timeline name the alert; resolving the alert restores the rules it replaced. Screenshots
go to ``artifacts/console-screenshots/alert-proposal-*.png``."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from alerts.engine import ensure_default_rules
from alerts.model import fingerprint
from alerts.store import AlertRecord, AlertStore
from guardians.store import RuleStore
from tests.e2e.test_console_browser import CHROMIUM_ARGS, Procs, artifacts_dir, cli, wait_for
from tests.services import free_port, need, need_binary

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


def test_apply_the_payment_alerts_proposal_then_revert_on_resolve(tmp_path):
    chromium = need_binary("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "python playwright is not installed (dev extra)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(TRADEGUARD_VAR_DIR=str(tmp_path / "var"), TRADEGUARD_APP=APP, PYTHONUNBUFFERED="1")
    seeded = subprocess.run(cli("seed"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    control = f"sqlite:///{tmp_path / 'var' / 'control.db'}"
    store = AlertStore(control)
    guard = RuleStore(control)
    ensure_default_rules(store, datetime.now(UTC))
    before = guard.current(APP)
    v0 = before.version if before else 0
    pay = _firing(store, "PaymentSuccessRateLow")
    procs = Procs(tmp_path, env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    shots = artifacts_dir()
    try:
        procs.start("console", cli("console", "--port", str(port)))

        def up() -> bool:
            procs.alive("console")
            return httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok"

        wait_for(up, 60, "the console's /_stcore/health")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{url}/alerts", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Alerts").first.wait_for(timeout=30_000)
            apply = page.get_by_role("button", name=f"Apply proposal of #{pay} PaymentSuccessRateLow")
            apply.wait_for(timeout=20_000)
            page.get_by_text("Proposed fix").first.wait_for(timeout=10_000)
            name = page.get_by_label("Applied by (your name) *")
            name.fill("sam")
            name.press("Tab")
            page.wait_for_timeout(500)
            apply.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "alert-proposal-preview.png"), full_page=True)
            apply.click()
            page.get_by_text(f"Proposal of alert #{pay} PaymentSuccessRateLow applied by sam").wait_for(
                timeout=20_000
            )
            cur = guard.current(APP)
            assert cur is not None and cur.version == v0 + 1 and cur.created_by == "sam"
            assert f"proposal of alert #{pay} PaymentSuccessRateLow" in cur.why
            assert {r["resource"]: r["fallback"] for r in cur.document["degrade"]}["payment.charge"] == (
                "queue_payment"
            )
            assert any(e["kind"] == "proposal_applied" and e["by"] == "sam" for e in store.events(pay))
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / "alert-proposal-applied.png"), full_page=True)
            applied = page.get_by_text("Applied by sam as rules").first
            applied.wait_for(timeout=10_000)
            applied.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "alert-proposal-applied-block.png"), full_page=True)
            # resolve it by hand: the rules the proposal replaced come back
            page.get_by_label("Your name *").first.fill("sam")
            page.get_by_label("Your name *").first.press("Tab")
            page.wait_for_timeout(500)
            page.get_by_role("button", name=f"Resolve #{pay}").click()
            wait_for(lambda: guard.current(APP).version == v0 + 2, 20, "the revert on resolve")
            cur = guard.current(APP)
            kept = {k: v for k, v in (before.document if before else {}).items() if v}
            assert {k: v for k, v in cur.document.items() if v} == kept
            assert f"alert #{pay}" in cur.why
            assert store.events(pay)[-1]["kind"] == "proposal_reverted"
            browser.close()
    finally:
        procs.stop_all()
        guard.close()
        store.close()
