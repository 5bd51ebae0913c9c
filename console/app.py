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


def chaos_banner() -> None:
    """On every page while payment chaos is on: what is injected, so nobody mistakes it for a real
    fault (1 heartbeat read + 1 node call per page run; nothing is shown when no node answers)."""
    from console.runtime import services

    try:
        settings = services().chaos_settings()
    except Exception:
        return
    latency = int(settings.get("latency_ms") or 0)
    rate = float(settings.get("error_rate") or 0.0)
    outage = bool(settings.get("outage"))
    if not (latency or rate or outage):
        return
    what = [f"+{latency} ms latency"] if latency else []
    what += [f"{100 * rate:.0f} % of charges fail"] if rate else []
    what += ["gateway outage (every charge fails)"] if outage else []
    st.error(
        f"**Payment chaos is ON** ({', '.join(what)}): alerts and charts show an injected fault. "
        "Reset it on the Chaos page when the demo is done.",
        icon=":material/thunderstorm:",
    )


st.set_page_config(
    page_title="tradeguard console",
    # a file shipped with the console: a ":material/...:" icon makes the browser fetch the
    # favicon from an external font host, which fails offline
    page_icon=str(HERE / "static" / "favicon.svg"),
    layout="wide",
    initial_sidebar_state="expanded",
)
# Less blank space above the page title on a wall screen.
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.2rem}</style>")
nav = st.navigation(pages(), position="sidebar")
with st.sidebar:
    st.markdown("## :material/shield: tradeguard")
    st.caption(f"app **{ConsoleConfig().app}** · times in UTC")
chaos_banner()
nav.run()
