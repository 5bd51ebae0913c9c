"""The alert detail's "Proposed fix" block: what the alert's rule proposes, its diff against the
guardian rules in force, the impact preview, and "Apply proposal" (disabled with the reason when the
signed-in role may not apply rules, the proposal is invalid or already in force).

Drawn by one line of ``console/views/alerts_page.py``; 1 alert-service read + 1 metric-store query
(``console.services.proposals.preview``). Apply submits the rules version shown the run before the
click, so rules changed in between are refused as stale, never overwritten.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.runtime import chart, show_errors
from console.services import ActionFailed
from dashboards import figures

FLASH = "alerts_flash"


def _applied_text(applied: dict[str, Any]) -> str:
    before = f"replaced v{applied['base']}" if applied["base"] else "there were no rules before"
    text = f"Applied by **{applied['by']}** as rules **v{applied['version']}** ({before})"
    if applied.get("reverted"):
        r = applied["reverted"]
        text += f"; {'reverted' if r['kind'] == 'proposal_reverted' else 'not reverted'}: {r['detail']}"
    elif applied.get("revert_on_resolve"):
        text += "; reverted when the alert resolves"
    return text + "."


def proposal_block(svc: Any, alert: dict[str, Any]) -> None:
    principal = svc.principal  # pages get the services bound to the signed-in user
    view = svc.proposal_preview(alert, principal)
    if view is None:
        return
    aid = view.alert_id
    st.markdown(f"**Proposed fix** — {view.describe or 'unreadable proposal'}")
    if view.summary:
        st.caption(view.summary + (" · reverted when the alert resolves" if view.revert_on_resolve else ""))
    show_errors(view.errors)
    if view.applied:
        st.info(_applied_text(view.applied), icon=":material/history:")
    if view.invalid:
        st.error(f"Invalid proposal: {view.invalid}", icon=":material/error:")
    left, right = st.columns(2)
    with left:
        in_force = f"v{view.rules_version}" if view.rules_version else "none yet"
        st.markdown(f"Diff against the rules in force ({in_force})")
        if view.diff:
            st.code(view.diff, language="diff")
        elif not view.invalid:
            st.caption("No change: the rules in force already contain it.")
    with right:
        st.markdown("Impact preview")
        if view.impact is not None and view.impact.has_traffic:
            chart(figures.impact_figure(view.impact, title=f"{view.resource}: proposal replayed"),
                  f"proposal_impact_{aid}")
        st.caption(view.impact_text)
    seen_key = f"proposal_seen_{aid}"
    seen = st.session_state.get(seen_key)  # the version shown the run before this one (the click's)
    with st.form(f"proposal_form_{aid}"):
        c1, c2 = st.columns([2, 3])
        by = principal.name
        c1.markdown(f"Signed in as **{principal.name}** ({principal.role})")
        clicked = c2.form_submit_button(
            f"Apply proposal of #{aid} {view.rule}",
            type="primary",
            disabled=view.disabled_reason is not None,
            help=view.disabled_reason or f"the proposed rules become the version after v{view.rules_version}",
        )
        if view.disabled_reason:
            st.caption(f"Apply is off: {view.disabled_reason}.")
    st.session_state[seen_key] = view.rules_version
    if not clicked:
        return
    try:
        out = svc.apply_proposal(
            aid,
            by=by,
            expected_rules_version=int(seen if seen is not None else view.rules_version),
            principal=principal,
        )
    except ActionFailed as exc:
        for e in exc.errors:
            st.error(f"{e.path or 'Apply proposal'}: {e.message}", icon=":material/error:")
        return
    revert = ", reverted when the alert resolves." if out["revert_on_resolve"] else "."
    st.session_state[FLASH] = (
        f"Proposal of alert #{aid} {view.rule} applied by {out['by']}: rules v{out['version']} in force "
        + (f"(replaced v{out['replaced']})" if out["replaced"] else "(there were no rules before)")
        + revert
    )
    st.rerun()
