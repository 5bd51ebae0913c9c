"""Links into the Traces page from other pages (Resources, Alerts) and from order ids.

``st.page_link`` to the Traces page with query parameters (``resource``, ``outcome``, ``trace_id``,
``order_id``) keeps the session (and the sign-in) in the same tab. Where the Traces page is not
registered (a page run alone, as AppTest does), a plain markdown link to the same URL is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from console.services.traces import alert_exemplars

TRACES_PAGE = Path(__file__).resolve().parent / "views" / "traces.py"
TRACES_URL = "traces"  # the page's url_path (st.Page default: the file name)


def traces_url(**params: str) -> str:
    """The Traces page's relative URL with these query parameters (empty ones left out)."""
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{TRACES_URL}?{query}" if query else TRACES_URL


def traces_link(label: str, *, icon: str = ":material/timeline:", **params: str) -> None:
    clean = {k: v for k, v in params.items() if v}
    try:
        st.page_link(TRACES_PAGE, label=label, icon=icon, query_params=clean)
    except Exception:  # the Traces page is not registered in this run
        st.markdown(f"{icon} [{label}]({traces_url(**clean)})")


def resource_trace_links(resource: str) -> None:
    """Blocked, slow and failed traces of one resource, side by side."""
    st.markdown(f"**Traces of {resource}**")
    cols = st.columns(3)
    for col, (outcome, icon) in zip(cols, (("blocked", ":material/block:"), ("slow", ":material/speed:"),
                                           ("error", ":material/error:")), strict=True):
        with col:
            traces_link(f"{outcome} requests", icon=icon, resource=resource, outcome=outcome)


def alert_exemplar_links(store: Any, alert: dict[str, Any], *, limit: int = 3) -> None:
    """An alert's exemplar traces: the kept error/blocked/slow requests of its resource (and node)
    in the minutes before it fired (``console.services.traces.alert_exemplars``)."""
    found = alert_exemplars(store, alert, limit=limit)
    if found.errors or not found.rows:
        if found.note:
            st.caption(found.note)
        return
    st.markdown("**Exemplar traces** (requests that made it fire)")
    for t in found.rows:
        traces_link(f"{t['outcome']} · {t['root']} · {t['duration_ms']:.1f} ms · {t['trace_id'][:12]}…",
                    trace_id=t["trace_id"])
    resource = (alert.get("labels") or {}).get("resource", "")
    if resource:
        traces_link(f"all kept traces of {resource}", icon=":material/manage_search:", resource=resource)
