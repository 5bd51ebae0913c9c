"""The console's Streamlit script: ``tradeguard console`` serves it through ``console_server.py``
(``st.App``, which adds the session-cookie routes); ``streamlit run`` on this file alone also works,
without the cookie (a reload then asks to sign in again).

The composition root opens the console's stores (``bootstrap.build_console_services``) once per
process, from the ``TRADEGUARD_*`` settings, and hands them to ``console.app.main``; the console
package itself never imports ``tradeguard`` (import-linter layers).
"""

from __future__ import annotations

import streamlit as st

from console import app, login
from console.services import ConsoleServices
from tradeguard import bootstrap
from tradeguard.settings import load_settings


@st.cache_resource(show_spinner=False)
def console_services() -> ConsoleServices:
    """Built on the first page view of the process, then shared by every session."""
    return bootstrap.build_console_services(load_settings())


@st.cache_resource(show_spinner=False)
def cookie_policy():  # type: ignore[no-untyped-def]
    """The session cookie's name and attributes (the same as the server's cookie routes)."""
    return bootstrap.console_cookie_policy(load_settings())


login.configure(cookie_policy())
app.main(console_services())
