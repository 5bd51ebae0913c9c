"""Who may do what on the console: every role × action through the services, and through the pages
of the real entry script (sign-in, navigation by role, refusal of a page opened by URL); sign-in
throttling, a disabled user, an idle session asked to sign in again, logout; the audit names the
signed-in user."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from common.identity import ACTIONS, PERMISSIONS, ROLES, Forbidden, Principal
from console.services import period

from .signin import PASSWORD, USERS, account_service, open_console, sign_in, texts

PRINCIPALS = {
    role: Principal(name, role, shops) for name, (role, shops) in USERS.items()
}


class OnCallStub:
    def set_on_call(self, who: str, *, by: str, **_: Any) -> dict[str, Any]:
        return {"who": who, "by": by}


class AlertRulesStub:
    """The alert-rules port: records who changed which rule."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def set_rule_enabled(self, name: str, enabled: bool, *, by: str, why: str) -> dict[str, Any]:
        self.calls.append({"name": name, "enabled": enabled, "by": by})
        return {"name": name, "enabled": enabled}


def _calls(svc) -> dict[str, Any]:
    """One service call per action of the role table."""
    p = period(date(2026, 11, 10), date(2026, 11, 11))
    return {
        "ops.read": lambda u: u.overview("5m"),
        "alerts.ack": lambda u: u.alert_action("acknowledge", 1),
        "alerts.silence": lambda u: u.silence(["alertname=X"], comment="known", duration="1h"),
        "alerts.resolve": lambda u: u.alert_action("resolve", 1),
        "oncall.set": lambda u: u.alerts.set_on_call("dora", by="someone else", duration="1h"),
        "alerts.rules": lambda u: u.alert_rule_set_enabled("PaymentSuccessLow", False, by="x", why="noise"),
        "rules.apply": lambda u: u.apply({"flow": [{"resource": "order.place", "threshold": 5}]}, "sale"),
        "rules.rollback": lambda u: u.rollback(1, "sale over"),
        "chaos.set": lambda u: u.set_chaos(latency_ms=100, error_rate=0.0, outage=False),
        "sales.read": lambda u: u.sales_report("shop-a", p),
        "users.manage": lambda u: u.list_users(),
    }


def test_the_table_covers_every_action():
    assert set(_calls(None)) == set(ACTIONS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_role_and_action_through_the_services(role, action, svc, tmp_path, clock):
    svc.accounts = account_service(tmp_path, clock)
    svc.alerts.add(1, "firing", "PaymentSuccessLow")
    svc.rules.apply("shop", {"flow": [{"resource": "order.place", "threshold": 50}]}, "ann", "baseline")
    svc.alerts.set_on_call = OnCallStub().set_on_call  # answers who it was called as
    svc.alert_rules = AlertRulesStub()
    user = svc.as_user(PRINCIPALS[role])
    call = _calls(svc)[action]
    if action in PERMISSIONS[role]:
        result = call(user)
        if action == "oncall.set":
            assert result["by"] == PRINCIPALS[role].name  # the signed-in user, whatever was passed
    else:
        with pytest.raises(Forbidden) as exc:
            call(user)
        message = str(exc.value)
        assert message.startswith(f"user {PRINCIPALS[role].name} ({role}) may not {ACTIONS[action]}")
        assert "needs role" in message
    if action == "rules.apply" and role in ("sre", "admin"):
        assert svc.rules.current("shop").created_by == PRINCIPALS[role].name
    if action == "chaos.set" and role in ("sre", "admin"):
        assert svc.chaos.calls[-1]["by"] == PRINCIPALS[role].name
    if action == "alerts.rules" and role != "merchant":
        assert svc.alert_rules.calls[-1]["by"] == PRINCIPALS[role].name  # not the "x" the page passed
    if action == "alerts.ack" and role != "merchant":
        assert svc.alerts.alerts[0]["acknowledged_by"] == PRINCIPALS[role].name


PAGES = {  # view → (title shown, action needed)
    "overview": ("Order-flow health", "ops.read"),
    "alerts_page": ("Alerts", "ops.read"),
    "resources": ("Resources", "ops.read"),
    "rules": ("Rules", "ops.read"),
    "instances": ("Instances", "ops.read"),
    "chaos": ("Chaos: payment gateway", "ops.read"),
    "sales": ("Sales", "sales.read"),
    "users": ("Users", "users.manage"),
}


@pytest.fixture
def console(monkeypatch, svc, tmp_path, clock):
    svc.accounts = account_service(tmp_path, clock)
    return lambda: open_console(monkeypatch, svc)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_and_page_through_the_pages(role, console):
    name = PRINCIPALS[role].name
    at = sign_in(console(), name)
    sidebar = texts(at.sidebar.markdown)
    assert f"**{name}** · role **{role}**" in sidebar
    links = [e.proto.label for e in at.sidebar.get("page_link")]
    every = ("Overview", "Alerts", "Alert rules", "Resources", "Traces", "Rules", "Instances", "Chaos",
             "Sales", "Users")
    assert links == [t for t in every if _may(role, t)]
    for view, (title, action) in PAGES.items():
        at.switch_page(f"../console/views/{view}.py").run()
        assert not at.exception, (view, [e.message for e in at.exception])
        errors = texts(at.error)
        if view == "overview" and action not in PERMISSIONS[role]:
            # the default page ("/"): the role lands on the first page it may open
            assert "Sales" in texts(at.title) and title not in texts(at.title)
        elif action in PERMISSIONS[role]:
            assert "not allowed" not in errors, view
            assert title in texts(at.title), view
        else:
            refusal = f"not allowed.** User {name} ({role}) may not open this page; it needs role"
            assert refusal in errors, view
            assert title not in texts(at.title), view
    if role == "oncall":  # reads the Rules and Chaos pages, may not change them
        at.switch_page("../console/views/chaos.py").run()
        assert at.button(key="FormSubmitter:chaos_form-Apply").disabled
        assert "may not change payment chaos; needs role sre or admin" in texts(at.caption)


def _may(role: str, title: str) -> bool:
    action = {"Sales": "sales.read", "Users": "users.manage"}.get(title, "ops.read")
    return action in PERMISSIONS[role]


def test_nothing_renders_before_sign_in_then_wrong_password(console):
    at = console()
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert not at.metric and not at.dataframe and not at.get("plotly_chart")
    assert "Order-flow health" not in texts(at.title)
    sign_in(at, "sam", "not the password")
    assert "wrong username or password" in texts(at.error)
    assert "Order-flow health" not in texts(at.title)
    assert "not the password" not in repr([at.session_state[k] for k in at.session_state])


def test_sign_in_is_throttled_after_repeated_failures(console):
    at = console()
    for _ in range(5):
        sign_in(at, "olivia", "wrong password!")
        assert "wrong username or password" in texts(at.error)
    sign_in(at, "olivia")  # even the right password now waits
    assert "too many failed sign-ins for olivia; try again in" in texts(at.error)
    assert "Order-flow health" not in texts(at.title)


def test_a_disabled_user_cannot_sign_in(console, svc):
    svc.accounts.disable("sam", by="test")
    at = sign_in(console(), "sam")
    assert "the account sam is disabled" in texts(at.error)
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_an_idle_session_is_asked_to_sign_in_again_and_logout(console, clock):
    at = sign_in(console(), "sam")
    assert "Order-flow health" in texts(at.title)
    clock.advance(59 * 60)
    at.run()
    assert "Order-flow health" in texts(at.title)  # activity 59 min later keeps it
    clock.advance(60 * 60)
    at.run()
    assert "your session expired after 60 idle minutes; sign in again" in texts(at.warning)
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    sign_in(at, "sam")
    assert "Order-flow health" in texts(at.title)
    at.sidebar.button(key="logout").click().run()
    assert "You are signed out." in texts(at.warning)
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_a_user_disabled_while_signed_in_loses_the_session(console, svc):
    at = sign_in(console(), "sam")
    svc.accounts.disable("sam", by="ada")
    at.run()
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_the_audit_of_a_rule_change_names_the_signed_in_user(console, svc):
    at = sign_in(console(), "sam")
    at.switch_page("../console/views/rules.py").run()
    gen = at.session_state["rules_gen"]
    area = next(t for t in at.text_area if t.key.startswith(f"yaml_{gen}_"))
    area.set_value("flow:\n  - {resource: order.place, threshold: 5}\n")
    at.button(key="yaml_use").click().run()
    assert not any(t.label.startswith("Your name") for t in at.text_input)  # no "Your name" box
    at.text_area(key="apply_why").set_value("flash sale")
    at.button(key="FormSubmitter:apply_form-Apply as version 1").click().run()
    assert not at.exception
    assert svc.rules.current("shop").created_by == "sam"


def test_merchant_lands_on_sales_and_an_edited_principal_does_not_stick(console, svc):
    at = sign_in(console(), "mia")
    assert "Sales" in texts(at.title)
    at.session_state["tg_principal"] = Principal("mia", "admin")  # an edited session state
    at.switch_page("../console/views/users.py").run()
    assert "not allowed.** User mia (merchant)" in texts(at.error)
    assert PASSWORD not in repr([at.session_state[k] for k in at.session_state])


def test_the_alert_service_checks_a_principal_when_given(tmp_path):
    from alerts.service import AlertService
    from alerts.store import AlertStore

    from .fakes import FakeClock

    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    alerts = AlertService(store, clock=FakeClock())
    try:
        with pytest.raises(Forbidden, match="user mia \\(merchant\\) may not silence alerts"):
            alerts.create_silence(["alertname=X"], created_by="mia", comment="c", duration="1h",
                                  principal=PRINCIPALS["merchant"])
        with pytest.raises(Forbidden, match="may not change the on-call rotation"):
            alerts.set_on_call("dora", by="mia", duration="1h", principal=PRINCIPALS["merchant"])
        s = alerts.create_silence(["alertname=X"], created_by="typed name", comment="c", duration="1h",
                                  principal=PRINCIPALS["oncall"])
        assert s["created_by"] == "olivia"  # the principal, not the typed name
        assert alerts.expire_silence(s["id"], "x", principal=PRINCIPALS["sre"])["expired_by"] == "sam"
    finally:
        store.close()
