"""Alerts: firing, pending and acknowledged alerts; one alert's timeline and metric; acknowledge,
resolve, silence; who is on call now; history.

The board refreshes every 5 s inside ``st.fragment(run_every=5)`` with 3 alert-service reads
(open alerts, silences, on-call). A full page run adds 1 read for the alert picker (+1 for recent
history when nothing is open), 2 for the selected alert (timeline; the metric behind it, 1
metric-store query), 1 for the Silences tab and 1 for the History tab. Session state holds only
the selection and form fields.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from console.runtime import chart, services, show_errors
from console.services import ActionFailed
from dashboards import figures

REFRESH_S = 5
SILENCE_DURATIONS = ("30m", "1h", "2h", "4h", "12h", "24h")
STATE_MARK = {"firing": "● firing", "pending": "◐ pending", "resolved": "○ resolved"}

svc = services()
st.title("Alerts")
if msg := st.session_state.pop("alerts_flash", None):
    st.success(msg, icon=":material/check_circle:")


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    t = datetime.fromisoformat(iso).astimezone(UTC)
    return f"{t:%m-%d %H:%M:%S}"


def _labels(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")


def _rows(alerts: list[dict]) -> list[dict]:
    return [
        {
            "id": a["id"],
            "state": STATE_MARK.get(a["state"], a["state"]),
            "severity": a.get("severity") or "",
            "alert": a.get("rule", ""),
            "summary": a.get("summary", ""),
            "labels": _labels(a.get("labels") or {}),
            "since (UTC)": _when(a.get("fired_at") or a.get("active_since")),
            "acknowledged by": a.get("acknowledged_by") or "",
            "muted": "silenced" if a.get("silenced_by") else "inhibited" if a.get("inhibited") else "",
        }
        for a in alerts
    ]


STATE_COLOR = {"firing": "#ff6b6b", "pending": "#f5b041", "resolved": "#2ecc71"}
SEVERITY_COLOR = {"critical": "#ff6b6b", "page": "#ff6b6b", "warning": "#f5b041"}


def _styled(rows: list[dict]):
    """Firing red, pending amber (state and severity cells), so the worst stands out on a wall."""
    import pandas as pd

    def cell(value: object, colors: dict[str, str]) -> str:
        color = next((c for k, c in colors.items() if str(value).endswith(k)), "")
        return f"color: {color}; font-weight: 600" if color else ""

    frame = pd.DataFrame(rows)
    return frame.style.map(lambda v: cell(v, STATE_COLOR), subset=["state"]).map(
        lambda v: cell(v, SEVERITY_COLOR), subset=["severity"]
    )


@st.fragment(run_every=REFRESH_S)
def board() -> None:
    data = svc.alerts_board()
    show_errors(data.errors)
    c = st.columns(5)
    c[0].metric("Firing", len(data.firing))
    c[1].metric("Pending", len(data.pending))
    c[2].metric("Acknowledged", len(data.acknowledged))
    c[3].metric("Silences", len(data.silences))
    on_call = ", ".join(f"{o['name']} ({o['rotation']})" for o in data.on_call if o.get("name")) or "nobody"
    c[4].metric("On call now", on_call if len(on_call) < 28 else on_call[:26] + "…", help=on_call)
    if not data.open_alerts:
        st.success("**All clear.** No alert is firing or pending.", icon=":material/check_circle:")
    else:
        st.dataframe(_styled(_rows(data.open_alerts)), hide_index=True)
    st.caption(
        f"Updated {datetime.now(UTC):%H:%M:%S} UTC · {data.calls} reads per refresh, every {REFRESH_S} s"
    )


board()

tab_detail, tab_silences, tab_history = st.tabs(
    ["Alert detail & actions", "Silences", "History"], key="alerts_tab"
)

with tab_detail:
    current = svc.open_alerts()
    history = [] if current else svc.alert_history(limit=20)
    pool = current or history
    if not pool:
        st.caption("No alert has fired yet.")
    else:
        by_id = {a["id"]: a for a in pool}
        chosen = st.selectbox(
            "Alert",
            list(by_id),
            key="alert_pick",
            format_func=lambda i: (
                f"#{i} · {by_id[i]['state']} · {by_id[i].get('rule')} · "
                f"{_labels(by_id[i].get('labels') or {})}"
            ),
        )
        if chosen is not None:
            timeline, metric = svc.alert_detail(chosen)
            alert = timeline["alert"]
            st.markdown(
                f"**{alert.get('rule')}** — {alert.get('summary') or ''}  \n"
                f"state **{alert['state']}**, severity **{alert.get('severity')}**, value "
                f"**{alert.get('value')}**"
            )
            chart(
                figures.alert_metric_figure(
                    metric.get("points") or [],
                    metric.get("threshold"),
                    metric.get("op"),
                    f"{alert.get('rule')}: value, last 30 min",
                ),
                "alert_metric",
            )
            if metric.get("error"):
                st.caption(f"Metric unavailable: {metric['error']}")
            left, right = st.columns(2)
            with left:
                st.markdown("**Timeline**")
                st.dataframe(
                    [
                        {
                            "at (UTC)": _when(e["at"]),
                            "event": e["kind"],
                            "by": e.get("by") or "",
                            "detail": e.get("detail") or "",
                        }
                        for e in timeline["events"]
                    ],
                    hide_index=True,
                )
            with right:
                st.markdown("**Notifications**")
                notes = timeline.get("notifications") or []
                if notes:
                    st.dataframe(
                        [
                            {
                                "at (UTC)": _when(n["created_at"]),
                                "channel": n["channel"],
                                "reason": n["reason"],
                                "status": n["status"],
                                "attempts": n["attempts"],
                            }
                            for n in notes
                        ],
                        hide_index=True,
                    )
                else:
                    st.caption("None sent.")
            if alert["state"] in ("firing", "pending"):
                with st.form("alert_action"):
                    by = st.text_input("Your name *", key="alert_by")
                    comment = st.text_input("Comment", key="alert_comment")
                    b = st.columns([1, 1, 1, 3])
                    ack = b[0].form_submit_button(
                        "Acknowledge", type="primary", disabled=bool(alert.get("acknowledged"))
                    )
                    unack = b[1].form_submit_button("Unacknowledge", disabled=not alert.get("acknowledged"))
                    resolve = b[2].form_submit_button("Resolve")
                action = (
                    "acknowledge" if ack else "unacknowledge" if unack else "resolve" if resolve else None
                )
                if action:
                    try:
                        svc.alert_action(action, chosen, by or "", comment or "")
                    except ActionFailed as exc:
                        for e in exc.errors:
                            st.error(f"{e.path or action}: {e.message}", icon=":material/error:")
                    else:
                        st.session_state.alerts_flash = f"Alert #{chosen}: {action}d by {by}."
                        st.rerun()

with tab_silences:
    silences = svc.active_silences()
    if silences:
        st.dataframe(
            [
                {
                    "id": s["id"],
                    "status": s["status"],
                    "matchers": ", ".join(s["matchers"]),
                    "until (UTC)": _when(s["ends_at"]),
                    "by": s["created_by"],
                    "comment": s["comment"],
                }
                for s in silences
            ],
            hide_index=True,
        )
    else:
        st.caption("No active silence.")
    with st.form("silence_form"):
        st.markdown("**New silence**")
        matchers = st.text_input(
            "Matchers *",
            key="silence_matchers",
            placeholder="alertname=PaymentSuccessLow, instance=node-1",
            help="comma-separated label=value (also !=, =~ regex, !~)",
        )
        c1, c2 = st.columns(2)
        duration = c1.selectbox("For", SILENCE_DURATIONS, index=1, key="silence_for")
        s_by = c2.text_input("Your name *", key="silence_by")
        s_comment = st.text_input("Comment *", key="silence_comment", placeholder="why it is silenced")
        create = st.form_submit_button("Silence", type="primary")
    if create:
        try:
            svc.silence(
                [m for m in (matchers or "").split(",") if m.strip()],
                by=s_by or "",
                comment=s_comment or "",
                duration=duration,
            )
        except ActionFailed as exc:
            for e in exc.errors:
                st.error(f"{e.path or 'silence'}: {e.message}", icon=":material/error:")
        else:
            st.session_state.alerts_flash = f"Silenced {matchers} for {duration}."
            st.rerun()
    if silences:
        with st.form("expire_form"):
            c1, c2, c3 = st.columns([2, 2, 1])
            sid = c1.selectbox("Silence", [s["id"] for s in silences], key="expire_id")
            e_by = c2.text_input("Your name *", key="expire_by")
            expire = c3.form_submit_button("Expire now")
        if expire:
            try:
                svc.expire_silence(int(sid), e_by or "")
            except ActionFailed as exc:
                for e in exc.errors:
                    st.error(f"{e.path or 'expire'}: {e.message}", icon=":material/error:")
            else:
                st.session_state.alerts_flash = f"Silence {sid} expired."
                st.rerun()

with tab_history:
    past = svc.alert_history(limit=100)
    if past:
        st.dataframe(
            _rows(past)
            and [
                {
                    **r,
                    "resolved (UTC)": _when(a.get("resolved_at")),
                    "resolved by": a.get("resolved_by") or "",
                }
                for r, a in zip(_rows(past), past, strict=True)
            ],
            hide_index=True,
        )
    else:
        st.caption("No alert has fired yet.")
