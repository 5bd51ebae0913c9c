"""The console's Streamlit server: ``tradeguard console`` runs ``streamlit run`` on this file, which
serves the script ``console_main.py`` as an ``st.App`` (Starlette) with two more routes, the ones
that set and clear the HttpOnly session cookie (``console.session_cookie``): a Streamlit script
cannot set an HttpOnly cookie itself.

``streamlit run`` finds the ``app = st.App(...)`` below and runs it under uvicorn with the usual
``--server.*`` options (port, address, headless, TLS).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from console.session_cookie import routes
from tradeguard.bootstrap import console_cookie_policy
from tradeguard.settings import load_settings

SCRIPT = Path(__file__).resolve().with_name("console_main.py")

app = st.App(SCRIPT, routes=routes(console_cookie_policy(load_settings())))
