"""Sign-in for the console: the login page, the session kept in Streamlit's session state, logout.

``gate(accounts)`` runs at the top of every script run, right after routing (``st.navigation``, so
the requested page and query survive sign-in): with no live session it draws the login page (fields
"Username" and "Password") and stops the run, so nothing of the data pages renders. A session idle
longer than ``TRADEGUARD_CONSOLE_SESSION_IDLE_MIN`` is dropped and the login page says so. Each run
re-reads the account (``AccountService.resume``): a user disabled or given another role since sign-in
does not keep the old rights.

The password is read from the widget, checked and forgotten: it is never kept in session state.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from accounts.errors import SignInError
from accounts.session import SessionExpired
from common.identity import Principal
from console.runtime import PRINCIPAL_KEY  # the Principal of this run (set by gate from the session)

log = logging.getLogger(__name__)

SESSION_KEY = "tg_session"  # accounts.session.Session
NOTICE_KEY = "tg_login_notice"


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


def signed_in() -> Principal | None:
    return st.session_state.get(PRINCIPAL_KEY)


def _forget() -> None:
    for key in (SESSION_KEY, PRINCIPAL_KEY):
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
    session = st.session_state.get(SESSION_KEY)
    if session is not None:
        try:
            principal = accounts.resume(session)
        except SessionExpired as exc:
            _forget()
            st.session_state[NOTICE_KEY] = str(exc)
        else:
            st.session_state[PRINCIPAL_KEY] = principal
            return principal
    st.session_state.pop(PRINCIPAL_KEY, None)
    login_page(accounts)
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def login_page(accounts: Any) -> None:
    st.title(":material/shield: tradeguard console")
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
    try:
        principal = accounts.authenticate(name or "", password or "", client_addr())
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
    st.session_state[SESSION_KEY] = accounts.start_session(principal)
    st.session_state[PRINCIPAL_KEY] = principal
    st.rerun()


def sidebar_user(principal: Principal) -> None:
    """Who is signed in, their role (and shops), and a logout button."""
    shops = f" · shops {', '.join(principal.shops)}" if principal.shops else ""
    st.markdown(f":material/person: **{principal.name}** · role **{principal.role}**{shops}")
    if st.button("Log out", key="logout", icon=":material/logout:"):
        log.info("user %s signed out", principal.name)
        _forget()
        st.session_state[NOTICE_KEY] = "You are signed out."
        st.rerun()
