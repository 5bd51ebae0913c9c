"""The per-process facade for Streamlit pages (built once from the environment, then cached)."""

from __future__ import annotations

import logging

import streamlit as st

from console.config import ConsoleConfig
from console.services import ConsoleServices, build_services

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False, max_entries=4)
def _services(key: tuple) -> ConsoleServices:
    config = ConsoleConfig()
    log.info("building console services for app %s", config.app)
    return build_services(config)


def services() -> ConsoleServices:
    """The console's application services; the stores are opened once per process and settings."""
    return _services(ConsoleConfig().cache_key())


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
