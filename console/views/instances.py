"""Instances: every node from its heartbeats — live, stale or gone; an old rule version stands out.

Refreshes every 3 s inside ``st.fragment(run_every=3)``: 1 heartbeat read and 1
rule-store read per refresh. No session state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from console.runtime import services, show_errors
from console.services.common import error_text

REFRESH_S = 3
STATUS_MARK = {"live": "● live", "stale": "◐ stale", "gone": "○ gone"}

st.title("Instances")
st.caption(
    "Each node writes a heartbeat to the control DB every few seconds: address, version, "
    "the rule version it enforces and when it last took a metrics snapshot."
)


def _age(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "–"
    s = max(0, int((now - at).total_seconds()))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


def rollout_block(svc: Any) -> None:
    """A canary rollout in progress: which nodes run it (2 reads; nothing when none runs)."""
    try:
        r = svc.canary_rollout()
    except Exception as exc:
        st.caption(f"Canary rollout unknown: {error_text(exc)}")
        return
    if r is None:
        return
    st.warning(
        f"**Canary rollout {r.canary_id} in progress** (on v{r.base_version}, by {r.started_by}: {r.why}): "
        f"running on {', '.join(r.running_on) or 'no node yet'}"
        + (f"; waiting for {', '.join(r.waiting_on)}" if r.waiting_on else "")
        + f". Guard: {r.guard.get('metric')} worse by > {r.guard.get('margin')} → "
        + ("automatic rollback." if r.guard.get("auto") else "manual decision.")
        + " `tradeguard rules canary status | promote | abort`",
        icon=":material/science:",
    )


RELAY_MARK = {"ok": "● ok", "lagging": "◐ lagging", "stale": "○ not running", "error": "◐ error",
              "absent": "– not started"}


def relay_block(svc: Any) -> None:
    """The journal relay (business figures from ``domain_events``): its lag, cursor and leader (1 read)."""
    st.subheader("Journal relay")
    try:
        r = svc.relay_status()
    except Exception as exc:
        st.caption(f"Relay status unknown: {type(exc).__name__}")
        return
    if r is None:
        st.caption("Relay status is not wired in this console.")
        return
    c = st.columns(4)
    c[0].metric("Relay", RELAY_MARK.get(r.state, r.state))
    c[1].metric("Lag", "–" if r.lag_s is None else f"{r.lag_s:.1f} s")
    c[2].metric("Cursor (journal id)", r.cursor)
    c[3].metric("Last cycle", "–" if r.last_cycle_age_s is None else f"{r.last_cycle_age_s:.0f} s ago")
    if r.state == "absent":
        st.caption("No relay has run: start `tradeguard worker` (its leader runs the relay); until then no "
                   "order reaches the sales figures.")
    elif r.state in ("stale", "lagging"):
        st.warning(f"**Business figures are behind**: relay {RELAY_MARK[r.state]}"
                   + (f", led by {r.leader}" if r.leader else ", no worker leads it") + ".",
                   icon=":material/warning:")
    elif r.state == "error" and r.error:
        st.warning(f"**The relay's last cycle stopped** (cursor kept, retried): {r.error}",
                   icon=":material/warning:")
    else:
        st.caption(f"Led by {r.leader}.")


@st.fragment(run_every=REFRESH_S)
def live() -> None:
    svc = services()
    data = svc.instances()
    show_errors(data.errors)
    now = svc.now()
    counts = {s: sum(1 for n in data.nodes if n.status == s) for s in ("live", "stale", "gone")}
    c = st.columns(4)
    c[0].metric("Live", counts["live"])
    c[1].metric("Stale", counts["stale"])
    c[2].metric("Gone", counts["gone"])
    c[3].metric(
        "Rule version in force", "–" if data.rule_version_in_force is None else data.rule_version_in_force
    )
    if not data.nodes:
        workers_table(data.workers, now)
        relay_block(svc)
        st.info(
            "**No node has reported yet.** Start one with `tradeguard node`; it appears here within "
            "a few seconds.",
            icon=":material/hourglass_empty:",
        )
        return
    rollout_block(svc)  # canary rollout in progress (below)
    outdated = [n for n in data.nodes if n.outdated]
    if outdated:
        st.error(
            f"**{len(outdated)} node(s) enforce an old rule version** (in force: "
            f"{data.rule_version_in_force}): "
            + ", ".join(
                f"{n.instance} (v{n.rule_version if n.rule_version is not None else '–'})" for n in outdated
            ),
            icon=":material/report:",
        )
    table = pd.DataFrame(
        [
            {
                "instance": n.instance,
                "status": STATUS_MARK.get(n.status, n.status),
                "rule version": "–" if n.rule_version is None else str(n.rule_version),
                "address": n.address,
                "version": n.version,
                "last heartbeat": _age(n.last_beat, now),
                "last snapshot": _age(n.last_snapshot_at, now),
                "_outdated": n.outdated,
                "_gone": n.status == "gone",
            }
            for n in data.nodes
        ]
    )

    status_color = {"live": "#2ecc71", "stale": "#f39c12", "gone": "#7f8c8d"}

    def style(row: pd.Series) -> list[str]:
        if row["_outdated"]:
            return ["background-color: #5c1a1a; color: #ffd7d7; font-weight: 600"] * len(row)
        if row["_gone"]:
            return ["color: #7f8c8d"] * len(row)
        color = next((c for k, c in status_color.items() if str(row["status"]).endswith(k)), "")
        return [f"color: {color}; font-weight: 600" if col == "status" and color else "" for col in row.index]

    st.dataframe(
        table.style.apply(style, axis=1),
        hide_index=True,
        column_order=[
            "instance",
            "status",
            "rule version",
            "address",
            "version",
            "last heartbeat",
            "last snapshot",
        ],
    )
    workers_table(data.workers, now)
    relay_block(svc)
    st.caption(
        f"Updated {datetime.now(UTC):%H:%M:%S} UTC · {data.queries} reads per refresh, every {REFRESH_S} s"
    )


ROLE_MARK = {"leader": "★ leader", "standby": "● standby", "stopped": "○ stopped", "gone": "○ gone"}


def workers_table(workers: list, now: datetime) -> None:
    """The workers: exactly one leads evaluation, escalation and delivery; the others stand by."""
    st.subheader("Workers")
    if not workers:
        st.caption(
            "No worker has reported yet. Start one (or two, for high availability) with `tradeguard worker`."
        )
        return
    leaders = [w for w in workers if w.role == "leader"]
    if not leaders:
        st.warning(
            "**No worker leads**: alerts are not evaluated nor delivered until one takes over.",
            icon=":material/warning:",
        )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "instance": w.instance,
                    "role": ROLE_MARK.get(w.role, w.role),
                    "host": w.host,
                    "pid": w.pid,
                    "last beat": _age(w.last_beat, now),
                }
                for w in workers
            ]
        ),
        hide_index=True,
    )


live()
