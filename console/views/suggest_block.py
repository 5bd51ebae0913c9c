"""The rule form's "Suggest" block: a threshold suggestion for the rule's resource from its recorded
traffic (``console.services.rules.suggest``: 1 metric-store query, 2 with a suggestion), with the
evidence scatter (knee marked) and the impact preview of the proposed QPS threshold.

Drawn only when asked (the button): a suggestion reads up to 7 days of per-second points.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.runtime import chart
from console.services import rules as rules_svc
from dashboards import figures

RANGES: dict[str, int] = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


def suggest_block(svc: Any, resource: str | None, key: str = "suggest") -> None:
    """Minimal additive block under the flow rule form."""
    if not resource:
        return
    ss = st.session_state
    c1, c2 = st.columns([2, 5])
    range_key = c2.selectbox(
        "From the recorded traffic of the last", list(RANGES), index=2, key=f"{key}_range"
    )
    if c1.button(
        "Suggest",
        key=f"{key}_btn",
        icon=":material/auto_fix_high:",
        help="find the capacity knee and propose QPS and concurrency thresholds",
    ):
        try:
            result, preview = rules_svc.suggest(svc.metrics, svc.app, resource, RANGES[range_key], svc.now())
            ss[f"{key}_out"] = (resource, range_key, result, preview)
        except Exception as exc:
            ss[f"{key}_out"] = (resource, range_key, f"{type(exc).__name__}: {exc}", None)
    out = ss.get(f"{key}_out")
    if not out or out[0] != resource:
        return
    _, rk, result, preview = out
    if isinstance(result, str):
        st.warning(f"Suggestion unavailable: {result}")
        return
    if result.suggestion is None:
        st.info(f"No suggestion for {resource} ({rk}): {result.reason}", icon=":material/help:")
        chart(figures.suggest_figure(result.evidence.to_dict()), f"{key}_fig")
        return
    sg = result.suggestion
    st.success(result.reason, icon=":material/auto_fix_high:")
    m = st.columns(3)
    m[0].metric("Knee", f"{sg.knee_qps:.0f}/s per node", help=f"method: {sg.method}")
    m[1].metric("QPS threshold", f"{sg.qps}/s", help="flow rule, grade qps, per node")
    m[2].metric("Concurrency threshold", f"{sg.concurrency}", help="Little's law: knee × RT at the knee")
    chart(figures.suggest_figure(result.evidence.to_dict(), sg.qps), f"{key}_fig")
    if preview is not None:
        st.caption(
            f"Impact preview of {sg.qps}/s: would block {preview.would_block:,} of "
            f"{preview.offered:,} calls ({100 * preview.block_share:.1f} %)."
        )
        chart(
            figures.impact_figure(preview, title=f"{resource}: proposed {sg.qps}/s replayed"), f"{key}_impact"
        )
