"""The tradeguard console: one multipage Streamlit app (``st.navigation``).

``main(services)`` is called by the entry script that the composition root owns
(``tradeguard/console_main.py``; ``tradeguard console`` runs it): every page talks only to
those ``console.services`` and draws figures from ``dashboards``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from common.identity import allowed, roles_allowed
from console import login, runtime
from console.services import ConsoleServices

HERE = Path(__file__).resolve().parent
VIEWS = HERE / "views"


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
        st.Page(VIEWS / "alert_rules.py", title="Alert rules", icon=":material/rule:"),
        st.Page(VIEWS / "resources.py", title="Resources", icon=":material/lan:"),
        st.Page(VIEWS / "traces.py", title="Traces", icon=":material/timeline:"),
        st.Page(VIEWS / "rules.py", title="Rules", icon=":material/tune:"),
        st.Page(VIEWS / "instances.py", title="Instances", icon=":material/dns:"),
        st.Page(VIEWS / "chaos.py", title="Chaos", icon=":material/bolt:"),
        st.Page(VIEWS / "sales.py", title="Sales", icon=":material/storefront:", url_path="sales"),
        st.Page(VIEWS / "users.py", title="Users", icon=":material/group:", url_path="users"),
    ]


# The action a page needs to be opened, by title (a page not named here is an operational page).
PAGE_ACTION: dict[str, str] = {"Sales": "sales.read", "Users": "users.manage"}


def page_action(page) -> str:
    return PAGE_ACTION.get(page.title, "ops.read")


def chaos_banner() -> None:
    """On every page while payment chaos is on: what is injected, so nobody mistakes it for a real
    fault (1 heartbeat read + 1 node call per page run; nothing is shown when no node answers)."""
    try:
        settings = runtime.services().chaos_settings()
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


def main(services: ConsoleServices) -> None:
    """Run the page the browser asked for, on ``services``."""
    runtime.install(services)
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
    every = pages()
    # Every page is routed (so a page opened by URL without permission gets a clear refusal, not
    # "page not found"); the sidebar links only the pages the role may open. Routed BEFORE the gate:
    # a run that never calls st.navigation sends the browser to "/", so a page asked for by URL
    # (say /sales?shop=…) would be lost through sign-in; routed first, the login page keeps the
    # requested path and query, and the run after sign-in opens that page.
    nav = st.navigation(every, position="hidden")
    # Nothing of the data pages before sign-in: the gate draws the login page and stops the run.
    principal = login.gate(services.accounts)
    mine = [p for p in every if allowed(principal, page_action(p))]
    with st.sidebar:
        st.markdown("## :material/shield: tradeguard")
        st.caption(f"app **{services.app}** · times in UTC")
        for p in mine:
            st.page_link(p)
        st.divider()
        login.sidebar_user(principal)
    if not allowed(principal, page_action(nav)):
        if nav.url_path == "" and mine:  # the default page: go to the first one the role may open
            st.switch_page(mine[0])
        needs = " or ".join(roles_allowed(page_action(nav)))
        st.error(
            f"**{nav.title}: not allowed.** User {principal.name} ({principal.role}) may not open this "
            f"page; it needs role {needs}. Ask an admin if you need it.",
            icon=":material/block:",
        )
        st.stop()
    if allowed(principal, "ops.read"):
        chaos_banner()
    nav.run()
