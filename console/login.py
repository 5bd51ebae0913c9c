"""Sign-in for the console: the login page, the server-side session and its cookie, logout.

``gate(accounts)`` runs at the top of every script run, right after routing (``st.navigation``, so
the requested page and query survive sign-in): with no live session it draws the login page (fields
"Username" and "Password") and stops the run, so nothing of the data pages renders.

A sign-in opens a server-side session in the control DB (``AccountService.open_session``: only the
hash of its token is stored) and hands the token to the browser as an HttpOnly, SameSite=Strict
cookie through the Streamlit server's ``/_tg/session`` route (``console.session_cookie``). Every run
resumes the session (``AccountService.resume_token``): from this tab's session state, or, on a
fresh page load (a reload, another tab), from the cookie the request carried. Each resume checks the
session is neither revoked nor idle longer than ``TRADEGUARD_CONSOLE_SESSION_IDLE_MIN`` nor older
than ``TRADEGUARD_CONSOLE_SESSION_MAX_HOURS``, and re-reads the account: a user disabled, or whose
password, role or shops changed since sign-in, is asked to sign in again. Log out revokes the session
on the server (for every tab of the browser) and expires the cookie.

The password is read from the widget, checked and forgotten: it is never kept in session state;
the session token stays on the server (session state) and in the HttpOnly cookie, never in the page.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from accounts.errors import SignInError
from accounts.session import SessionEnded, SessionRevoked
from common.identity import Principal
from console.runtime import PRINCIPAL_KEY  # the Principal of this run (set by gate from the session)
from console.session_cookie import TICKETS, CookiePolicy, claim_script, clear_proof, clear_script

log = logging.getLogger(__name__)

TOKEN_KEY = "tg_session_token"  # the server session's token (kept server-side, in session state)
TICKET_KEY = "tg_cookie_ticket"  # a ticket not yet exchanged for the cookie by the browser
CLEAR_KEY = "tg_cookie_clear"  # the proof of an ended session whose cookie is to be expired
COOKIE_TRIED_KEY = "tg_cookie_tried"  # the request's cookie was tried in this Streamlit session
NOTICE_KEY = "tg_login_notice"

_policy = CookiePolicy()


def configure(policy: CookiePolicy) -> None:
    """The session cookie's name and attributes (the entry script passes the settings' ones)."""
    global _policy
    _policy = policy


def cookie_policy() -> CookiePolicy:
    return _policy


def request_cookie(name: str) -> str | None:
    """The cookie ``name`` of the request that opened this Streamlit session (a page load)."""
    try:
        value = st.context.cookies.get(name)
    except Exception:
        return None
    return str(value) if value else None


def client_addr() -> str:
    """The browser's address for sign-in throttling (Streamlit's view of it), else "unknown"."""
    try:
        ip = st.context.ip_address
        if ip:
            return str(ip)
    except Exception:
        pass
    try:
        headers = st.context.headers
        forwarded = headers.get("X-Forwarded-For") or headers.get("X-Real-Ip")
        if forwarded:
            return forwarded.split(",")[0].strip()
    except Exception:
        pass
    return "unknown"


def _ip_address() -> str | None:
    try:
        ip = st.context.ip_address
    except Exception:
        return None
    return str(ip) if ip else None


def _forget() -> None:
    for key in (TOKEN_KEY, TICKET_KEY, PRINCIPAL_KEY):
        st.session_state.pop(key, None)


def gate(accounts: Any) -> Principal:
    """The signed-in principal; otherwise draw the login page and stop this run."""
    if accounts is None:
        st.error(
            "**Sign-in is not configured**: this console has no account service. Start it with "
            "`tradeguard console` (it opens the users of the control DB).",
            icon=":material/lock:",
        )
        st.stop()
    token = st.session_state.get(TOKEN_KEY)
    from_cookie = False
    if token is None and not st.session_state.get(COOKIE_TRIED_KEY):
        # a fresh page load: the cookie of the request, tried once (st.context.cookies keeps the
        # page load's cookies for the whole Streamlit session, even after a sign-out here)
        st.session_state[COOKIE_TRIED_KEY] = True
        token = request_cookie(_policy.name)
        from_cookie = token is not None
    if token is not None:
        try:
            principal = accounts.resume_token(token)
        except SessionEnded as exc:
            _forget()
            st.session_state[CLEAR_KEY] = clear_proof(token)
            quiet = from_cookie and isinstance(exc, SessionRevoked) and exc.reason == "signed out"
            if not quiet:
                st.session_state[NOTICE_KEY] = str(exc)
        except Exception as exc:  # the control DB is down: say so, keep the session for later
            log.exception("resuming a console session failed")
            if from_cookie:
                st.session_state[COOKIE_TRIED_KEY] = False  # try the cookie again next run
            st.error(f"Sessions are unavailable right now ({type(exc).__name__}); reload shortly.",
                     icon=":material/error:")
            st.stop()
        else:
            if from_cookie:
                log.info("user %s resumed a session from the browser's cookie", principal.name)
            st.session_state[TOKEN_KEY] = token
            st.session_state[PRINCIPAL_KEY] = principal
            return principal
    st.session_state.pop(PRINCIPAL_KEY, None)
    login_page(accounts)
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def login_page(accounts: Any) -> None:
    st.title(":material/shield: tradeguard console")
    if proof := st.session_state.pop(CLEAR_KEY, None):
        st.html(clear_script(proof), unsafe_allow_javascript=True)  # expire the browser's cookie
    if notice := st.session_state.pop(NOTICE_KEY, None):
        st.warning(notice, icon=":material/timer_off:")
    left, _ = st.columns([2, 3])
    with left, st.form("login_form"):
        st.markdown("**Sign in**")
        name = st.text_input("Username", key="login_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password",
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    addr = client_addr()
    try:
        principal = accounts.authenticate(name or "", password or "", addr)
        token = accounts.open_session(principal, addr)
    except SignInError as exc:
        st.session_state.pop("login_password", None)
        left.error(str(exc), icon=":material/error:")
        return
    except Exception as exc:  # the control DB is down: say so, never the password
        log.exception("sign-in failed")
        left.error(f"Sign-in is unavailable right now ({type(exc).__name__}); try again shortly.",
                   icon=":material/error:")
        return
    st.session_state.pop("login_password", None)
    st.session_state[TOKEN_KEY] = token
    # the browser exchanges it for the cookie (from the address it has here, when Streamlit knows it)
    st.session_state[TICKET_KEY] = TICKETS.put(token, _ip_address())
    st.session_state[PRINCIPAL_KEY] = principal
    st.rerun()


def set_cookie_until_claimed() -> None:
    """While this tab's ticket is not exchanged for the cookie (or expired): the page's fetch that
    exchanges it. Drawn on every run until then, so a run cut short (a page switch) does not lose it."""
    ticket = st.session_state.get(TICKET_KEY)
    if ticket is None:
        return
    if not TICKETS.pending(ticket):
        st.session_state.pop(TICKET_KEY, None)
        return
    st.html(claim_script(ticket), unsafe_allow_javascript=True)


def sidebar_user(principal: Principal) -> None:
    """Who is signed in, their role (and shops), and a logout button."""
    set_cookie_until_claimed()
    shops = f" · shops {', '.join(principal.shops)}" if principal.shops else ""
    st.markdown(f":material/person: **{principal.name}** · role **{principal.role}**{shops}")
    if st.button("Log out", key="logout", icon=":material/logout:"):
        token = st.session_state.get(TOKEN_KEY)
        accounts = _accounts()
        try:
            if accounts is not None:
                accounts.sign_out(token)
        except Exception:  # the control DB is down: the cookie is still expired below
            log.exception("revoking the session of %s failed", principal.name)
        log.info("user %s signed out", principal.name)
        _forget()
        if token:
            st.session_state[CLEAR_KEY] = clear_proof(token)
        st.session_state[NOTICE_KEY] = "You are signed out."
        st.rerun()


def _accounts() -> Any:
    from console import runtime

    installed = runtime._installed
    return getattr(installed, "accounts", None)
