"""The Alerts page in a real browser (chromium through playwright) against a console on SQLite:
an alert that changes state between render and click is refused, never another acknowledged;
the picker and detail follow the alerts by themselves (a closed alert leaves the picker, typed
text stays); nothing is fetched from an external host (the favicon is local). A screenshot goes to
``artifacts/console-screenshots/alerts-refused.png`` and ``alerts-handled.png``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest

from alerts.engine import ensure_default_rules
from alerts.model import fingerprint
from alerts.store import AlertRecord, AlertStore
from tests.e2e.console_stack import (
    ONCALL,
    Procs,
    add_users,
    artifacts_dir,
    clean_env,
    metric_value,
    seed,
    shoot,
    sign_in,
    start_console,
    wait_for,
)

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


def test_acknowledge_refuses_an_alert_that_changed_after_render(tmp_path, browser):
    env = clean_env(tmp_path)
    seed(env, tmp_path)
    store = AlertStore(f"sqlite:///{tmp_path / 'var' / 'control.db'}")
    ensure_default_rules(store, datetime.now(UTC))
    brk = _add(store, "BreakerOpen", "firing", 1.0, instance="n1", resource="payment.charge")
    pay = _add(store, "PaymentSuccessRateLow", "pending", 0.7617)
    add_users(tmp_path / "var", {ONCALL: ("oncall", ())})
    procs = Procs(tmp_path, env)
    try:
        url = start_console(procs)
        with browser.new_context(viewport={"width": 1600, "height": 1000}) as ctx:
            page = ctx.new_page()
            external: list[str] = []

            def note(request) -> None:
                if request.url.startswith("http") and urlparse(request.url).hostname not in LOCAL:
                    external.append(request.url)

            page.on("request", note)
            sign_in(page, url, ONCALL, path="alerts")
            page.get_by_role("heading", name="Alerts").first.wait_for(timeout=30_000)
            # the newest open alert (the pending payment one) is picked first
            button = page.get_by_role("button", name=f"Acknowledge #{pay} PaymentSuccessRateLow")
            button.wait_for(timeout=15_000)
            # right after a board refresh (every 5 s; one that sees the change redraws the detail),
            # the evaluator fires it: the click still carries the state the page showed
            updated = page.get_by_text("Updated ").first
            before = updated.inner_text()
            page.wait_for_function(
                "t => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
                ".some(e => e.innerText.startsWith('Updated ') && e.innerText !== t)",
                arg=before, timeout=15_000,
            )
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
            page.get_by_text(f"Alert #{pay} PaymentSuccessRateLow: acknowledged by {ONCALL}").wait_for(
                timeout=15_000
            )
            assert {a.id: a.acknowledged_by for a in store.open_alerts()} == {pay: ONCALL, brk: None}
            # both handled now (pay acknowledged, brk inhibited under it): dimmed rows, Firing 0
            page.wait_for_timeout(1000)
            shoot(page, "alerts-handled")
            # the picker and detail follow the alerts by themselves: text typed for the picked alert
            # stays while another alert closes, and the closed one leaves the picker
            comment = page.get_by_label("Comment (required to silence)")
            comment.fill("checking the gateway")
            rec = store.get_alert(brk)
            rec.state, rec.resolved_at = "resolved", datetime.now(UTC)
            store.update_alert(rec, columns=("state", "resolved_at"))
            # pay acknowledged; brk (the payment breaker) inhibited under pay, its cause
            assert metric_value(page, "Handled") == "2"
            # the board's refresh sees brk closed and redraws the whole page (no click)
            wait_for(lambda: metric_value(page, "Handled") == "1", 15, "the board to drop the closed alert")
            page.wait_for_timeout(500)
            assert comment.input_value() == "checking the gateway"
            page.get_by_label("Alert (open alerts only)").click()
            options = page.get_by_role("option").all_inner_texts()
            assert [o.split(" ")[0] for o in options] == [f"#{pay}"], options
            page.keyboard.press("Escape")
            assert external == [], external
    finally:
        procs.stop_all()
        store.close()
