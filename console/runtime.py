"""What every page shares: the process's ``ConsoleServices`` and two rendering helpers.

The console sits below the composition root in the import layers, so it never opens a
store itself: the entry script (``tradeguard/console_main.py``, run by ``tradeguard
console``) builds the services once per process and hands them to ``console.app.main``,
which installs them here before a page runs.
"""

from __future__ import annotations

import streamlit as st

from console.services import ConsoleServices
from console.services.access import UserServices

PRINCIPAL_KEY = "tg_principal"  # set by console.login.gate on every run from the live session

_installed: ConsoleServices | None = None


def install(services: ConsoleServices) -> None:
    """Make ``services`` what every page gets (the entry script does it on every run)."""
    global _installed
    _installed = services


def services() -> UserServices:
    """The console's application services bound to this session's signed-in user (every action
    checks the user's role; the audit records the user's name)."""
    if _installed is None:
        raise RuntimeError(
            "the console's services are not installed: start the console with `tradeguard console` "
            "(it runs tradeguard/console_main.py, which opens the stores)"
        )
    principal = st.session_state.get(PRINCIPAL_KEY)
    if principal is None:
        raise PermissionError("not signed in: sign in on the console's login page")
    return _installed.as_user(principal)


def show_errors(errors: list[str]) -> None:
    """Store errors as one warning box (a page keeps rendering what it could read)."""
    if errors:
        st.warning(
            "Some data could not be read:\n\n" + "\n".join(f"- {e}" for e in errors),
            icon=":material/warning:",
        )


def chart(fig, key: str) -> None:
    """A dashboards figure, full width, with its own dark template (not Streamlit's theme)."""
    st.plotly_chart(fig, theme=None, key=key, config={"displaylogo": False, "displayModeBar": False})
