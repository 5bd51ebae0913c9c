"""The console's sign-in survives a reload in a real browser (Debian's chromium through playwright),
against the shared console stack of ``tests/e2e/conftest.py`` (``tradeguard console``: the st.App
with the session-cookie routes).

Signs in on the Rules page; the browser holds an HttpOnly, SameSite=Strict cookie that page scripts
cannot read; a reload (F5) and a second tab are still signed in on their page; log out ends it for
both tabs, the cookie is expired and the old token no longer works even when replayed; a disabled
user's cookie signs no one in. Screenshots go to ``artifacts/console-screenshots/``.
"""

from __future__ import annotations

import pytest

from tests.e2e.console_stack import PASSWORD, SRE, add_users, artifacts_dir, sign_in, wait_for

pytestmark = pytest.mark.e2e

COOKIE = "tg_console_session"
LEAVER = "e2e-leaver"
WAIT = 60_000  # ms: generous, the machine may be loaded (nothing here is timed)


def shoot(page, name: str) -> None:
    """These pages fit the viewport: a plain screenshot, with room for a loaded machine."""
    page.screenshot(path=str(artifacts_dir() / f"{name}.png"), timeout=WAIT)


def session_cookie(ctx) -> dict | None:
    return next((c for c in ctx.cookies() if c["name"] == COOKIE), None)


def wait_signed_in(page, heading: str) -> None:
    page.get_by_role("button", name="Log out").wait_for(timeout=WAIT)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=WAIT)
    # the login form of the run before goes once the new run is drawn (Streamlit keeps stale
    # elements until then)
    page.get_by_role("textbox", name="Username").wait_for(state="detached", timeout=WAIT)
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


def wait_login_page(page) -> None:
    page.get_by_role("textbox", name="Username").wait_for(timeout=WAIT)
    page.get_by_role("button", name="Log out").wait_for(state="detached", timeout=WAIT)
    assert page.locator("[data-testid='stMetric']").count() == 0  # nothing of the data pages


def test_a_reload_keeps_the_sign_in_until_log_out(stack, browser):
    url = stack["console"]
    with browser.new_context(viewport={"width": 1600, "height": 1000}) as ctx:
        page = ctx.new_page()
        sign_in(page, url, SRE, path="rules")
        wait_signed_in(page, "Rules")
        cookie = wait_for(lambda: session_cookie(ctx), 60, "the session cookie")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert cookie["secure"] is False  # plain http here; Secure over https
        assert COOKIE not in page.evaluate("document.cookie")  # page scripts cannot read it

        page.reload(wait_until="domcontentloaded")  # F5: a new Streamlit session
        wait_signed_in(page, "Rules")
        assert page.url.rstrip("/").endswith("/rules")
        assert f"{SRE} · role sre" in page.locator("[data-testid='stSidebar']").inner_text()
        page.wait_for_timeout(1500)
        shoot(page, "session-after-reload")

        tab = ctx.new_page()  # a second tab of the same browser
        tab.goto(f"{url}/alerts", wait_until="domcontentloaded")
        wait_signed_in(tab, "Alerts")

        page.get_by_role("button", name="Log out").click()
        wait_login_page(page)
        page.get_by_text("You are signed out.").wait_for(timeout=WAIT)
        wait_for(lambda: session_cookie(ctx) is None, 60, "the session cookie to be expired")
        page.reload(wait_until="domcontentloaded")
        wait_login_page(page)
        shoot(page, "session-signed-out-reload")
        tab.reload(wait_until="domcontentloaded")
        wait_login_page(tab)

    # the revoked token replayed by hand (a copied cookie): refused on the server, not only forgotten
    with browser.new_context(viewport={"width": 1600, "height": 1000}) as ctx:
        ctx.add_cookies([{"name": COOKIE, "value": cookie["value"], "url": url}])
        page = ctx.new_page()
        page.goto(f"{url}/rules", wait_until="domcontentloaded")
        wait_login_page(page)


def test_a_disabled_users_cookie_no_longer_signs_in(stack, browser):
    from accounts.service import AccountService
    from accounts.store import UserStore

    url = stack["console"]
    add_users(stack["tmp"] / "var", {LEAVER: ("oncall", ())})
    with browser.new_context(viewport={"width": 1600, "height": 1000}) as ctx:
        page = ctx.new_page()
        sign_in(page, url, LEAVER, path="alerts")
        wait_signed_in(page, "Alerts")
        wait_for(lambda: session_cookie(ctx), 60, "the session cookie")
        page.reload(wait_until="domcontentloaded")
        wait_signed_in(page, "Alerts")

        accounts = AccountService(UserStore(f"sqlite:///{stack['tmp'] / 'var' / 'control.db'}"))
        try:
            accounts.disable(LEAVER, by="e2e")
        finally:
            accounts.close()
        page.reload(wait_until="domcontentloaded")
        wait_login_page(page)
        page.get_by_text("your account was disabled").wait_for(timeout=WAIT)
        shoot(page, "session-disabled-user")
        # and the password no longer signs in either
        page.get_by_role("textbox", name="Username").fill(LEAVER)
        page.get_by_role("textbox", name="Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text(f"the account {LEAVER} is disabled").wait_for(timeout=WAIT)
