"""The Alert rules page in a real browser (chromium through playwright) against the session's console
stack (``tests/e2e/conftest.py``), signed in as an sre user (issue 16):

create a rule in the form, raise its threshold (the diff against the rule in force shows it), try an
invalid rule in YAML (refused whole with the field named: nothing saved), read the version's diff on
the History tab and roll back to the version before the edit. After each step the alert rules in force
are read from the control DB through ``AlertService``. Screenshots go to
``artifacts/console-screenshots/alert-rules-*.png``.
"""

from __future__ import annotations

import pytest

from alerts.service import AlertService
from alerts.store import AlertStore
from tests.e2e.console_stack import SRE, shoot, sign_in

pytestmark = pytest.mark.e2e
RULE = "E2EOrderPlaceErrors"


def _rule(svc: AlertService) -> dict | None:
    return next((r for r in svc.rules() if r["name"] == RULE), None)


def _type(page, label: str, text: str) -> None:
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(text)
    box.press("Tab")  # Streamlit commits a text input on blur


def _pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_alert_rule_create_edit_refuse_diff_and_rollback(stack, browser):
    store = AlertStore(f"sqlite:///{stack['tmp'] / 'var' / 'control.db'}")
    alerts = AlertService(store)
    page = None
    try:
        history = alerts.rule_history(limit=1)
        v0 = history[0]["version"] if history else 0
        assert _rule(alerts) is None
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        sign_in(page, stack["console"], SRE, path="alert_rules")
        page.get_by_role("heading", name="Alert rules").first.wait_for(timeout=30_000)
        page.get_by_text("each change is a new version").wait_for(timeout=15_000)
        page.get_by_role("button", name="Delete").wait_for(timeout=15_000)
        page.mouse.move(800, 10)  # no hover highlight left on the sidebar by the sign-in click
        page.wait_for_timeout(1500)  # the table's canvas paints
        shoot(page, "alert-rules-list")

        # create: a new rule in the form (the defaults count resource errors per minute)
        page.get_by_role("tab", name="Edit & back-test").click()
        _type(page, "name *", RULE)
        _type(page, "query.where", "{resource: order.place}")
        _type(page, "threshold *", "5")
        code = page.locator("[data-testid='stCode']")
        code.filter(has_text=f"+name: {RULE}").first.wait_for(timeout=15_000)
        page.get_by_role("button", name="Create rule").click()
        page.get_by_text(f"Rule {RULE} saved by {SRE}: alert rules version {v0 + 1}").wait_for(timeout=20_000)
        rule = _rule(alerts)
        assert rule is not None and rule["threshold"] == 5.0
        assert rule["query"]["where"] == {"resource": "order.place"}
        created = alerts.rule_history(limit=1)[0]
        assert (created["version"], created["created_by"]) == (v0 + 1, SRE)
        assert created["why"] == f"rule {RULE} created in the console"  # no reason typed: says what

        # edit its threshold: the page stays on the tab, now editing the saved rule; the diff shows it
        assert page.get_by_role("tab", name="Edit & back-test").get_attribute("aria-selected") == "true"
        page.get_by_role("textbox", name="threshold *", exact=True).wait_for(timeout=15_000)
        assert page.get_by_role("textbox", name="name *", exact=True).input_value() == RULE
        _type(page, "threshold *", "20")
        diff = page.locator("[data-testid='stCode']").filter(has_text="+threshold: 20.0").first
        diff.wait_for(timeout=15_000)
        assert "-threshold: 5.0" in diff.inner_text()
        diff.scroll_into_view_if_needed()
        shoot(page, "alert-rules-edit-diff")
        page.get_by_role("button", name="Save rule").click()
        page.get_by_text(f"Rule {RULE} saved by {SRE}: alert rules version {v0 + 2}").wait_for(timeout=20_000)
        assert _rule(alerts)["threshold"] == 20.0

        # an invalid rule in YAML: a valid threshold change and an unknown aggregate, refused whole
        page.get_by_text("YAML", exact=True).click()
        area = page.get_by_role("textbox", name="Rule (YAML)")
        area.wait_for(timeout=15_000)
        text = area.input_value()
        assert "threshold: 20.0" in text and "aggregate: sum" in text
        bad = text.replace("threshold: 20.0", "threshold: 80").replace("aggregate: sum", "aggregate: median")
        area.fill(bad)
        area.press("Control+Enter")
        errors = page.locator("[data-testid='stAlertContentError']")
        refused = errors.filter(has_text="This rule is not valid")
        refused.wait_for(timeout=15_000)
        message = refused.inner_text()
        assert "nothing was saved" in message and "rule.query.aggregate" in message
        save = page.get_by_role("button", name="Save rule")
        save.wait_for(state="detached", timeout=15_000)  # nothing to save while invalid
        refused.scroll_into_view_if_needed()
        shoot(page, "alert-rules-refused")
        rule = _rule(alerts)
        assert (rule["threshold"], rule["query"]["aggregate"]) == (20.0, "sum")
        assert alerts.rule_history(limit=1)[0]["version"] == v0 + 2

        # History: the edit's diff, then roll back to the version before it
        page.get_by_role("tab", name="History").click()
        _pick(page, "Version", str(v0 + 2))
        code.filter(has_text=f"~ {RULE}: threshold: 5.0 → 20.0").wait_for(timeout=15_000)
        _pick(page, "Version", str(v0 + 1))
        code.filter(has_text=f"+ {RULE}").wait_for(timeout=15_000)
        _type(page, "Why", "e2e: back to 5 a minute")
        page.get_by_role("button", name=f"Roll back to version {v0 + 1}").click()
        page.get_by_text(
            f"Rolled back to version {v0 + 1} by {SRE}: version {v0 + 3} is in force."
        ).wait_for(timeout=20_000)
        page.wait_for_timeout(1000)
        shoot(page, "alert-rules-rolled-back")
        assert _rule(alerts)["threshold"] == 5.0
        latest = alerts.rule_history(limit=1)[0]
        assert (latest["version"], latest["restored_from"], latest["created_by"]) == (v0 + 3, v0 + 1, SRE)
        assert latest["why"] == "e2e: back to 5 a minute"
        page.close()
    except BaseException:
        if page is not None:
            shoot(page, "alert-rules-failure")  # what the page showed when the test failed
        raise
    finally:
        store.close()
