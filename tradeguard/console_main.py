"""The console's Streamlit entry script: ``tradeguard console`` runs ``streamlit run`` on this file.

The composition root opens the console's stores (``bootstrap.build_console_services``) once per
process, from the ``TRADEGUARD_*`` settings, and hands them to ``console.app.main``; the console
package itself never imports ``tradeguard`` (import-linter layers).
"""

from __future__ import annotations

import streamlit as st

from console import app
from console.services import ConsoleServices
from tradeguard import bootstrap
from tradeguard.settings import load_settings


@st.cache_resource(show_spinner=False)
def console_services() -> ConsoleServices:
    """Built on the first page view of the process, then shared by every session."""
    return bootstrap.build_console_services(load_settings())


app.main(console_services())
