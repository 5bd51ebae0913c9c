"""The tradeguard console: one multipage Streamlit app (``st.navigation``).

``main(services)`` is called by the entry script that the composition root owns
(``tradeguard/console_main.py``; ``tradeguard console`` runs it): every page talks only to
those ``console.services`` and draws figures from ``dashboards``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from console import runtime
from console.services import ConsoleServices

VIEWS = Path(__file__).resolve().parent / "views"


def pages() -> list:
    # a page file must not be named like a package (sys.path holds the main script's dir): alerts_page
    return [
        st.Page(VIEWS / "overview.py", title="Overview", icon=":material/monitoring:", default=True),
        st.Page(
            VIEWS / "alerts_page.py",
            title="Alerts",
            icon=":material/notifications_active:",
            url_path="alerts",
        ),
        st.Page(VIEWS / "resources.py", title="Resources", icon=":material/lan:"),
        st.Page(VIEWS / "traces.py", title="Traces", icon=":material/timeline:"),
        st.Page(VIEWS / "rules.py", title="Rules", icon=":material/tune:"),
        st.Page(VIEWS / "instances.py", title="Instances", icon=":material/dns:"),
        st.Page(VIEWS / "chaos.py", title="Chaos", icon=":material/bolt:"),
    ]


def main(services: ConsoleServices) -> None:
    """Run the page the browser asked for, on ``services``."""
    runtime.install(services)
    st.set_page_config(
        page_title="tradeguard console",
        page_icon=":material/shield:",
        layout="wide",
        initial_sidebar_state="expanded",
    )
    # Less blank space above the page title on a wall screen.
    st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.2rem}</style>")
    nav = st.navigation(pages(), position="sidebar")
    with st.sidebar:
        st.markdown("## :material/shield: tradeguard")
        st.caption(f"app **{services.app}** · times in UTC")
    nav.run()
