"""The rule form's "Suggest" block: a threshold suggestion for the rule's resource from its recorded
traffic (``svc.suggest``: 1 metric-store query, 2 with a suggestion), with the evidence scatter (knee
marked), the impact preview of the proposed QPS threshold, and buttons that put either proposal
(QPS or concurrency) into the rule form (``on_use``) — nothing is saved until the form is.

Drawn only when asked (the button): a suggestion reads up to 7 days of per-second points. Reading
the recorded traffic needs ``ops.read``; a user without it sees why and a disabled button.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from console.runtime import chart
from console.services.common import error_text
from dashboards import figures

RANGES: dict[str, int] = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


def suggest_block(
    svc: Any,
    resource: str | None,
    key: str = "suggest",
    on_use: Callable[[str, float], None] | None = None,
) -> None:
    """Under the flow rule form; ``on_use(grade, threshold)`` puts a proposal into the form (a
    button callback: it runs before the next run draws the form's widgets)."""
    if not resource:
        return
    ss = st.session_state
    st.subheader("Suggest a threshold")
    refused = svc.refusal("ops.read")
    c1, c2 = st.columns([2, 5])
    range_key = c2.selectbox(
        "From the recorded traffic of the last", list(RANGES), index=2, key=f"{key}_range"
    )
    asked = c1.button(
        "Suggest",
        key=f"{key}_btn",
        icon=":material/auto_fix_high:",
        help="find the capacity knee and propose QPS and concurrency thresholds",
        disabled=refused is not None,
    )
    if refused:
        st.caption(f"Suggest is not available: {refused}.")
        return
    if asked:
        try:
            result, preview = svc.suggest(resource, RANGES[range_key])
            ss[f"{key}_out"] = (resource, range_key, result, preview)
        except Exception as exc:
            ss[f"{key}_out"] = (resource, range_key, error_text(exc), None)
        ss.pop(f"{key}_used", None)
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
    if on_use is not None:

        def use(grade: str, threshold: float, text: str) -> None:
            on_use(grade, threshold)
            ss[f"{key}_used"] = text

        b1, b2, _ = st.columns([2, 2, 3])
        b1.button(
            f"Use {sg.qps}/s (grade qps) in the form",
            key=f"{key}_use_qps",
            on_click=use,
            args=("qps", float(sg.qps), f"grade qps, threshold {sg.qps}"),
        )
        b2.button(
            f"Use {sg.concurrency} (grade concurrency) in the form",
            key=f"{key}_use_conc",
            on_click=use,
            args=("concurrency", float(sg.concurrency), f"grade concurrency, threshold {sg.concurrency}"),
        )
        if used := ss.get(f"{key}_used"):
            st.info(
                f"Put into the form above: {used}. Press **Save to draft & validate** to keep it; "
                "nothing is applied until you apply the draft.",
                icon=":material/edit:",
            )
    chart(figures.suggest_figure(result.evidence.to_dict(), sg.qps), f"{key}_fig")
    if preview is not None:
        st.caption(
            f"Impact preview of {sg.qps}/s: would block {preview.would_block:,} of "
            f"{preview.offered:,} calls ({100 * preview.block_share:.1f} %)."
        )
        chart(
            figures.impact_figure(preview, title=f"{resource}: proposed {sg.qps}/s replayed"), f"{key}_impact"
        )
