"""The Alerts page in a real browser (chromium through playwright) against a console on SQLite:
an alert that changes state between render and click is refused, never another acknowledged;
nothing is fetched from an external host (the favicon is local). A screenshot goes to
``artifacts/console-screenshots/alerts-refused.png``."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import httpx
import pytest

from alerts.engine import ensure_default_rules
from alerts.model import fingerprint
from alerts.store import AlertRecord, AlertStore
from tests.e2e.test_console_browser import CHROMIUM_ARGS, Procs, artifacts_dir, cli, wait_for
from tests.services import free_port, need, need_binary

pytestmark = pytest.mark.e2e
LOCAL = ("127.0.0.1", "localhost")


def _add(store: AlertStore, rule: str, state: str, value: float, **labels: str) -> int:
    now = datetime.now(UTC)
    full = {"alertname": rule, "severity": "critical", "app": "tradeguard", **labels}
    rec = AlertRecord(
        id=0,
        fingerprint=fingerprint(full),
        rule=rule,
        labels=full,
        annotations={"summary": f"{rule} (e2e)"},
        severity="critical",
        state=state,
        active_since=now - timedelta(seconds=30),
        value=value,
        fired_at=now if state == "firing" else None,
        last_true_at=now,
    )
    return store.insert_alert(rec).id


def test_acknowledge_refuses_an_alert_that_changed_after_render(tmp_path):
    chromium = need_binary("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "python playwright is not installed (dev extra)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(TRADEGUARD_VAR_DIR=str(tmp_path / "var"), TRADEGUARD_APP="tradeguard", PYTHONUNBUFFERED="1")
    seeded = subprocess.run(cli("seed"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    store = AlertStore(f"sqlite:///{tmp_path / 'var' / 'control.db'}")
    ensure_default_rules(store, datetime.now(UTC))
    brk = _add(store, "BreakerOpen", "firing", 1.0, instance="n1", resource="payment.charge")
    pay = _add(store, "PaymentSuccessRateLow", "pending", 0.7617)
    from accounts.service import AccountService
    from accounts.store import UserStore

    accounts = AccountService(UserStore(f"sqlite:///{tmp_path / 'var' / 'control.db'}"))
    accounts.add_user("olivia", "oncall", "e2e alerts password, long enough", by="e2e")
    accounts.close()
    procs = Procs(tmp_path, env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        procs.start("console", cli("console", "--port", str(port)))

        def up() -> bool:
            procs.alive("console")
            return httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok"

        wait_for(up, 60, "the console's /_stcore/health")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            external: list[str] = []

            def note(request) -> None:
                if request.url.startswith("http") and urlparse(request.url).hostname not in LOCAL:
                    external.append(request.url)

            page.on("request", note)
            page.goto(f"{url}/alerts", wait_until="domcontentloaded")
            page.get_by_role("textbox", name="Username").fill("olivia")
            page.get_by_role("textbox", name="Password").fill("e2e alerts password, long enough")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Alerts").first.wait_for(timeout=30_000)
            # the newest open alert (the pending payment one) is picked first
            button = page.get_by_role("button", name=f"Acknowledge #{pay} PaymentSuccessRateLow")
            button.wait_for(timeout=15_000)
            page.wait_for_timeout(500)
            # the evaluator fires it after the page was drawn
            rec = store.get_alert(pay)
            rec.state, rec.fired_at = "firing", datetime.now(UTC)
            store.update_alert(rec, columns=("state", "fired_at"))
            button.click()
            page.get_by_text("changed from pending to firing since you opened it").wait_for(timeout=15_000)
            assert [a.acknowledged_by for a in store.open_alerts()] == [None, None]
            page.wait_for_timeout(1000)
            page.screenshot(path=str(artifacts_dir() / "alerts-refused.png"), full_page=True)
            # what is shown now can be acknowledged, and only that alert is
            page.get_by_role("button", name=f"Acknowledge #{pay} PaymentSuccessRateLow").click()
            page.get_by_text(f"Alert #{pay} PaymentSuccessRateLow: acknowledged by olivia").wait_for(
                timeout=15_000
            )
            assert {a.id: a.acknowledged_by for a in store.open_alerts()} == {pay: "olivia", brk: None}
            assert external == [], external
            browser.close()
    finally:
        procs.stop_all()
        store.close()
