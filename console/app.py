"""The tradeguard console: ``streamlit run console/app.py`` (``tradeguard console`` does it for you).

One multipage app (``st.navigation``). Every page talks only to ``console.services``
(built once per process from the ``TRADEGUARD_*`` environment) and draws figures from
``dashboards``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from console.config import ConsoleConfig

HERE = Path(__file__).resolve().parent
ALERTS_SERVICE = HERE.parent / "alerts" / "service.py"


def pages() -> list:
    views = HERE / "views"
    out = [
        st.Page(views / "overview.py", title="Overview", icon=":material/monitoring:", default=True),
        st.Page(views / "resources.py", title="Resources", icon=":material/lan:"),
        st.Page(views / "rules.py", title="Rules", icon=":material/tune:"),
        st.Page(views / "instances.py", title="Instances", icon=":material/dns:"),
        st.Page(views / "chaos.py", title="Chaos", icon=":material/bolt:"),
    ]
    if ALERTS_SERVICE.exists():  # a page file must not be named like a package (sys.path holds its dir)
        out.insert(
            1,
            st.Page(
                views / "alerts_page.py",
                title="Alerts",
                icon=":material/notifications_active:",
                url_path="alerts",
            ),
        )
    return out


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
    st.caption(f"app **{ConsoleConfig().app}** · times in UTC")
nav.run()
