"""The console's session across page loads: the one-time tickets, the cookie routes (HttpOnly,
SameSite=Strict, Secure over https, cross-site refused), and the real entry script in AppTest: a
sign-in hands out a ticket, the route turns it into the cookie, a new page load (a new AppTest with
that cookie) is signed in on its own; sign-out, a disabled user, an idle session end it."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from console import login
from console.session_cookie import (
    CLAIM_PATH,
    CLEAR_PATH,
    CookiePolicy,
    TicketBox,
    claim_script,
    clear_proof,
    clear_script,
    routes,
)

from .signin import account_service, open_console, sign_in, texts

BASE = "http://console.test"
BROWSER = "10.1.2.3"  # the browser's address as Streamlit sees it (AppTest has none)


class Ticks:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def client(policy: CookiePolicy | None = None, box: TicketBox | None = None,
           addr: str = "testclient") -> TestClient:
    return TestClient(Starlette(routes=routes(policy or CookiePolicy(), box)), base_url=BASE,
                      client=(addr, 50000))


def set_cookie(response) -> str:
    return response.headers.get("set-cookie", "")


# ------------------------------------------------------------------------------------- tickets
def test_a_ticket_is_taken_once_and_expires():
    ticks = Ticks()
    box = TicketBox(ttl_s=60, monotonic=ticks)
    first, second = box.put("token-1"), box.put("token-2")
    assert first != second and box.pending(first)
    assert box.take(first) == "token-1"
    assert box.take(first) is None and not box.pending(first)
    ticks.t += 60
    assert not box.pending(second) and box.take(second) is None


def test_a_ticket_bound_to_an_address_is_taken_only_from_it():
    box = TicketBox()
    ticket = box.put("token-1", "10.0.0.5")
    assert box.take(ticket, "10.0.0.6") is None and box.take(ticket) is None
    assert box.take(ticket, "10.0.0.5") == "token-1"


def test_the_claim_script_carries_the_ticket_never_the_token():
    box = TicketBox()
    ticket = box.put("the-secret-token")
    html = claim_script(ticket)
    assert ticket in html and "the-secret-token" not in html and CLAIM_PATH in html
    with pytest.raises(ValueError):
        claim_script('x"</script><script>alert(1)')


# ------------------------------------------------------------------------------------- routes
def test_the_claim_route_sets_an_httponly_strict_cookie_once():
    box = TicketBox()
    ticket = box.put("tok-123")
    with client(CookiePolicy(name="tg_test", max_age_s=7200), box) as http:
        done = http.post(CLAIM_PATH, json={"ticket": ticket}, headers={"Origin": BASE})
        assert done.status_code == 204
        cookie = set_cookie(done)
        assert cookie.startswith("tg_test=tok-123;")
        attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/", "max-age=7200"} <= attrs
        assert "secure" not in attrs  # plain http
        again = http.post(CLAIM_PATH, json={"ticket": ticket}, headers={"Origin": BASE})
        assert again.status_code == 400 and "set-cookie" not in again.headers
        assert http.post(CLAIM_PATH, json={"ticket": "made-up"}).status_code == 400
        assert http.post(CLAIM_PATH, content=b"not json").status_code == 400
        assert http.get(CLAIM_PATH).status_code == 405
        elsewhere = box.put("tok-456", "10.9.9.9")  # given out to another address
        assert http.post(CLAIM_PATH, json={"ticket": elsewhere}).status_code == 400
        assert box.pending(elsewhere)
        here = box.put("tok-789", "testclient")  # TestClient's address
        assert http.post(CLAIM_PATH, json={"ticket": here}).status_code == 204


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": BASE},
])
def test_cross_site_requests_are_refused_and_keep_the_ticket(headers):
    box = TicketBox()
    ticket = box.put("tok")
    with client(box=box) as http:
        done = http.post(CLAIM_PATH, json={"ticket": ticket}, headers=headers)
        assert done.status_code == 403 and "set-cookie" not in done.headers
        assert http.post(CLEAR_PATH, json={"proof": "ab"}, headers=headers).status_code == 403
    assert box.pending(ticket)


@pytest.mark.parametrize("policy_secure, headers, secure", [
    (None, {"X-Forwarded-Proto": "https"}, True),
    (None, {}, False),
    (True, {}, True),
    (False, {"X-Forwarded-Proto": "https"}, False),
])
def test_secure_follows_https_unless_forced(policy_secure, headers, secure):
    box = TicketBox()
    with client(CookiePolicy(secure=policy_secure), box) as http:
        done = http.post(CLAIM_PATH, json={"ticket": box.put("tok")}, headers=headers)
        assert ("; secure" in set_cookie(done).lower()) is secure
        http.cookies.set("tg_console_session", "tok")
        cleared = http.post(CLEAR_PATH, json={"proof": clear_proof("tok")}, headers=headers)
        assert ("; secure" in set_cookie(cleared).lower()) is secure


def test_the_clear_route_expires_the_cookie_of_that_session_only():
    same = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    with client(CookiePolicy(name="tg_test")) as http:
        http.cookies.set("tg_test", "old-token")
        done = http.post(CLEAR_PATH, json={"proof": clear_proof("old-token")}, headers=same)
        assert done.status_code == 204
        cookie = set_cookie(done).lower()
        assert cookie.startswith('tg_test="";') and "max-age=0" in cookie and "httponly" in cookie
        # a newer sign-in (another tab) holds the cookie: an ended session's proof leaves it
        http.cookies.set("tg_test", "newer-token")
        kept = http.post(CLEAR_PATH, json={"proof": clear_proof("old-token")}, headers=same)
        assert kept.status_code == 204 and "set-cookie" not in kept.headers
        assert http.post(CLEAR_PATH, json={}, headers=same).headers.get("set-cookie") is None
        assert http.post(CLEAR_PATH, content=b"x", headers=same).status_code == 400
    assert "old-token" not in clear_script(clear_proof("old-token"))


# ------------------------------------------------------------------------------------- the console
@pytest.fixture
def console(monkeypatch, svc, tmp_path, clock):
    """``console(cookie=None)``: a new page load of the entry script, with the request's cookie."""
    svc.accounts = account_service(tmp_path, clock)

    def load(cookie: str | None = None):
        monkeypatch.setattr(login, "_ip_address", lambda: BROWSER)
        monkeypatch.setattr(login, "request_cookie",
                            lambda name: cookie if name == "tg_console_session" else None)
        return open_console(monkeypatch, svc)

    return load


def browser_cookie(at) -> str:
    """What the browser does with the page's claim script: POST the ticket, keep the cookie."""
    ticket = at.session_state[login.TICKET_KEY]
    htmls = [h.proto.body for h in at.sidebar.get("html")]
    assert any(ticket in h and CLAIM_PATH in h for h in htmls)
    with client(addr="10.9.9.9") as elsewhere:  # the ticket, stolen, from another address
        assert elsewhere.post(CLAIM_PATH, json={"ticket": ticket}).status_code == 400
    with client(addr=BROWSER) as http:
        done = http.post(CLAIM_PATH, json={"ticket": ticket})
    assert done.status_code == 204
    return done.cookies["tg_console_session"]


def signed_in_as(at, name: str) -> bool:
    return f"**{name}**" in texts(at.sidebar.markdown) and not at.text_input


def test_a_reload_with_the_cookie_is_still_signed_in_on_the_same_page(console, svc):
    at = sign_in(console(), "sam")
    token = at.session_state[login.TOKEN_KEY]
    cookie = browser_cookie(at)
    assert cookie == token
    assert svc.accounts.store.sessions("sam")[0].token_hash != token  # the DB has its hash only
    at.run()  # claimed: the claim script is gone
    assert login.TICKET_KEY not in at.session_state and not at.sidebar.get("html")

    again = console(cookie)  # F5: a new Streamlit session, the request carries the cookie
    assert signed_in_as(again, "sam") and "Order-flow health" in texts(again.title)
    again.switch_page("../console/views/rules.py").run()
    assert "Rules" in texts(again.title)
    assert login.TICKET_KEY not in again.session_state  # no new cookie handed out

    fresh = console(None)  # a browser without the cookie signs in
    assert [t.label for t in fresh.text_input] == ["Username", "Password"]


def test_sign_out_revokes_the_session_for_every_tab_and_the_cookie(console, svc):
    at = sign_in(console(), "sam")
    cookie = browser_cookie(at)
    tab2 = console(cookie)
    assert signed_in_as(tab2, "sam")
    at.sidebar.button(key="logout").click().run()
    assert "You are signed out." in texts(at.warning)
    # the page expires the cookie of this session
    assert any(clear_proof(cookie) in h.proto.body for h in at.get("html"))
    tab2.run()  # the other tab's next run: signed out too
    assert [t.label for t in tab2.text_input] == ["Username", "Password"]
    assert "you are signed out" in texts(tab2.warning)
    reload = console(cookie)  # a reload with the old cookie: the sign-in page, quietly
    assert [t.label for t in reload.text_input] == ["Username", "Password"]
    assert not reload.warning
    assert any(clear_proof(cookie) in h.proto.body for h in reload.get("html"))


def test_a_disabled_users_cookie_no_longer_works(console, svc):
    at = sign_in(console(), "sam")
    cookie = browser_cookie(at)
    svc.accounts.disable("sam", by="ada")
    again = console(cookie)
    assert [t.label for t in again.text_input] == ["Username", "Password"]
    assert "your account was disabled" in texts(again.warning)
    svc.accounts.enable("sam", by="ada")
    assert not signed_in_as(console(cookie), "sam")  # enabled again: the old session stays ended


def test_an_idle_cookie_asks_to_sign_in_again(console, clock):
    at = sign_in(console(), "mia")
    cookie = browser_cookie(at)
    clock.advance(59 * 60)
    assert signed_in_as(console(cookie), "mia")  # activity 59 min later keeps it
    clock.advance(60 * 60)
    again = console(cookie)
    assert "your session expired after 60 idle minutes; sign in again" in texts(again.warning)
    assert [t.label for t in again.text_input] == ["Username", "Password"]


def test_a_made_up_cookie_shows_the_sign_in_page(console):
    at = console("not-a-session-token")
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert "not known" in texts(at.warning)
