"""Alerts: firing, pending and handled alerts; one alert's timeline and metric; acknowledge,
silence, resolve one alert; who is on call now (and setting it); history.

The board refreshes every 5 s inside ``st.fragment(run_every=5)`` with 3 alert-service reads
(open alerts, silences, on-call). A full page run adds 1 read of the rule documents (units and
conditions), 1 read for the alert picker, 2 for the selected alert (timeline; the metric behind
it, 1 metric-store query; a payment alert adds 2 metric-store queries for the gateway's recent
errors), 1 for the Silences tab, 1 for the On-call tab and 1 for the History tab.

Every action on an alert is keyed by its id: the picker's value is the id (its label never
changes with the alert's state), the form and its fields are keyed by the id, and the action is
submitted with the state the person saw, so the alert service refuses it when that alert changed
or closed in between. Session state holds the selection, what was seen of it, and form fields.

The picker and the detail are not in the fragment (a detail costs metric queries), but they never
lag the board: when the board's refresh finds an alert opened or closed, or the picked alert
changed (state, acknowledged, muted), it reruns the whole page (a full run; text typed in a form
stays). A refresh that finds nothing changed costs nothing more.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from console.runtime import chart, services, show_errors
from console.services import ActionFailed, alert_actions
from console.services.alert_actions import condition_text, runbook_section, unit_of, value_text
from console.services.alerts import PAYMENT_RESOURCE, is_payment_alert
from console.services.common import error_text
from console.trace_links import alert_exemplar_links
from dashboards import figures

REFRESH_S = 5
SILENCE_DURATIONS = ("30m", "1h", "2h", "4h", "12h", "24h")
ON_CALL_DURATIONS = ("1h", "4h", "8h", "12h", "24h", "1w")
STATE_MARK = {"firing": "● firing", "pending": "◐ pending", "resolved": "○ resolved", "inactive": "○ cleared"}
SEEN = "alert_seen"  # {"id", "state", "rule"} of the alert whose actions were last shown
LISTED = "alerts_listed"  # what the last full run's picker and detail showed: {"ids", "picked", "look"}

svc = services()
# cleared at the top of a full run (the board drawn in it compares nothing) and set again at its end
st.session_state.pop(LISTED, None)
st.title("Alerts")
if msg := st.session_state.pop("alerts_flash", None):
    st.success(msg, icon=":material/check_circle:")
RULES = alert_actions.rule_documents(svc.alerts)
# the silence form's example names a real rule
EXAMPLE_ALERT = "PaymentSuccessRateLow" if "PaymentSuccessRateLow" in RULES or not RULES else sorted(RULES)[0]


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    t = datetime.fromisoformat(iso).astimezone(UTC)
    return f"{t:%m-%d %H:%M:%S}"


def _labels(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))


def _handled(a: dict) -> bool:
    """Someone took it (acknowledged) or it is muted (silenced, or inhibited by its cause)."""
    return bool(a.get("acknowledged") or a.get("silenced_by") or a.get("inhibited"))


def _muted(a: dict) -> str:
    if a.get("silenced_by"):
        return "silenced #" + ", #".join(str(i) for i in a["silenced_by"])
    if not a.get("inhibited"):
        return ""
    cause = a.get("inhibited_by") or {}
    if not cause.get("id"):
        return "inhibited (cause firing)"
    return f"inhibited by #{cause['id']} {cause.get('rule', '')}"


def _value(a: dict) -> str:
    return value_text(a.get("value"), unit_of(RULES.get(a.get("rule", ""))))


def _rows(alerts: list[dict]) -> list[dict]:
    """State, who took it and whether it is muted come first (they decide what to do)."""
    return [
        {
            "id": a["id"],
            "state": STATE_MARK.get(a["state"], a["state"]),
            "acknowledged by": a.get("acknowledged_by") or "",
            "silenced": _muted(a),
            "severity": a.get("severity") or "",
            "alert": a.get("rule", ""),
            "value": _value(a),
            "resource": (a.get("labels") or {}).get("resource", ""),
            "summary": a.get("summary", ""),
            "labels": _labels(a.get("labels") or {}),
            "since (UTC)": _when(a.get("fired_at") or a.get("active_since")),
        }
        for a in alerts
    ]


STATE_COLOR = {"firing": "#ff6b6b", "pending": "#f5b041", "resolved": "#2ecc71"}
SEVERITY_COLOR = {"critical": "#ff6b6b", "page": "#ff6b6b", "warning": "#f5b041"}
DIM = "color: #7d838c"


def _styled(rows: list[dict], handled: list[bool]):
    """Firing red, pending amber (state and severity cells), so the worst stands out on a wall;
    handled rows (acknowledged, silenced, inhibited) are dimmed whole."""
    import pandas as pd

    def cell(value: object, colors: dict[str, str]) -> str:
        color = next((c for k, c in colors.items() if str(value).endswith(k)), "")
        return f"color: {color}; font-weight: 600" if color else ""

    def row_style(row: pd.Series) -> list[str]:
        if handled[int(row.name)]:  # type: ignore[arg-type]
            return [DIM] * len(row)
        return [
            cell(v, STATE_COLOR) if k == "state" else cell(v, SEVERITY_COLOR) if k == "severity" else ""
            for k, v in row.items()
        ]

    return pd.DataFrame(rows).style.apply(row_style, axis=1)


@st.fragment(run_every=REFRESH_S)
def board() -> None:
    data = svc.alerts_board()
    show_errors(data.errors)
    if alert_actions.view_changed(st.session_state.get(LISTED), data.open_alerts):
        # an alert opened or closed, or the picked one changed state: redraw the picker and detail
        # too (a full run), so nothing below shows a closed alert or a state that is no longer true
        st.session_state.pop(LISTED, None)
        st.rerun()
    handled = [_handled(a) for a in data.open_alerts]
    firing = [a for a, h in zip(data.open_alerts, handled, strict=True) if a["state"] == "firing" and not h]
    pending = [a for a, h in zip(data.open_alerts, handled, strict=True) if a["state"] == "pending" and not h]
    c = st.columns(5)
    c[0].metric("Firing", len(firing), help="firing and nobody has acknowledged or muted them")
    c[1].metric("Pending", len(pending), help="condition holds, waiting for the rule's `for`")
    c[2].metric("Handled", sum(handled), help="acknowledged, silenced, or inhibited by a firing cause")
    c[3].metric("Silences", len(data.silences))
    on_call = ", ".join(f"{o['name']} ({o['rotation']})" for o in data.on_call if o.get("name")) or "nobody"
    c[4].metric("On call now", on_call if len(on_call) < 28 else on_call[:26] + "…", help=on_call)
    if not data.open_alerts:
        st.success("**All clear.** No alert is firing or pending.", icon=":material/check_circle:")
    else:
        st.dataframe(_styled(_rows(data.open_alerts), handled), hide_index=True)
    st.caption(
        f"Updated {datetime.now(UTC):%H:%M:%S} UTC · {data.calls} reads per refresh, every {REFRESH_S} s"
        " · dimmed rows are handled"
    )


board()

tab_detail, tab_silences, tab_oncall, tab_history = st.tabs(
    ["Alert detail & actions", "Silences", "On call", "History"], key="alerts_tab"
)


def _pick_label(a: dict) -> str:
    """Stable for the alert's life (id, rule, labels): never its state, so a state change
    cannot move the selection."""
    labels = _labels(a.get("labels") or {})
    return f"#{a['id']} · {a.get('rule')}" + (f" · {labels}" if labels else "")


def _forget_closed(open_ids: set[int]) -> None:
    """Drop the form fields kept for alerts that are no longer open."""
    for key in [k for k in st.session_state if k.startswith(("alert_comment_", "alert_for_"))]:
        try:
            alert_id = int(key.rsplit("_", 1)[1])
        except ValueError:
            continue
        if alert_id not in open_ids:
            del st.session_state[key]


def _actions(alert: dict) -> None:
    """The action form of ONE alert, keyed by its id, submitted with the state shown last run."""
    aid, rule, state = alert["id"], alert.get("rule") or "", alert["state"]
    seen = st.session_state.get(SEEN) or {}
    seen_state = seen.get("state") if seen.get("id") == aid else state
    with st.form(f"alert_action_{aid}"):
        st.markdown(f"**Act on #{aid} {rule}** (shown as **{state}**)")
        f2, f3 = st.columns([4, 1])
        comment = f2.text_input("Comment (required to silence)", key=f"alert_comment_{aid}")
        duration = f3.selectbox("Silence for", SILENCE_DURATIONS, index=1, key=f"alert_for_{aid}")
        st.caption(f"Recorded as **{svc.principal.name}** (signed in).")
        b = st.columns([3, 2, 2, 2, 3])  # the named buttons (Acknowledge, Escalate) fit their label
        acked = bool(alert.get("acknowledged"))
        clicked = {
            "acknowledge": b[0].form_submit_button(
                f"Acknowledge #{aid} {rule}", type="primary", disabled=acked
            ),
            "unacknowledge": b[1].form_submit_button(f"Unacknowledge #{aid}", disabled=not acked),
            "silence": b[2].form_submit_button(f"Silence #{aid}", disabled=bool(alert.get("silenced_by"))),
            "resolve": b[3].form_submit_button(f"Resolve #{aid}"),
        }
        if state == "firing":
            clicked["escalate"] = b[4].form_submit_button(
                f"Escalate #{aid} {rule}", help="notify the next step of the escalation policy now"
            )
    action = next((k for k, v in clicked.items() if v), None)
    st.session_state[SEEN] = {"id": aid, "state": state, "rule": rule}
    if action is None:
        return
    try:
        alert_actions.act(
            svc.alerts,
            action,
            aid,
            expected_state=str(seen_state),
            by=svc.principal.name,
            comment=comment or "",
            duration=duration or "1h",
        )
    except ActionFailed as exc:
        for e in exc.errors:
            st.error(f"{e.path or action}: {e.message}", icon=":material/error:")
    else:
        done = {
            "acknowledge": "acknowledged",
            "unacknowledge": "unacknowledged",
            "silence": "silenced",
            "escalate": "escalated",
        }
        st.session_state.alerts_flash = (
            f"Alert #{aid} {rule}: {done.get(action, action + 'd')} by {svc.principal.name}"
            + (f" for {duration}" if action == "silence" else "")
            + "."
        )
        st.rerun()


def _detail(alert: dict, metric: dict, timeline: dict) -> None:
    labels = alert.get("labels") or {}
    rule_doc = RULES.get(alert.get("rule") or "")
    unit = unit_of(rule_doc)
    handled = []
    if alert.get("acknowledged_by"):
        handled.append(f"acknowledged by **{alert['acknowledged_by']}**")
    if muted := _muted(alert):
        handled.append(muted)
    st.markdown(
        f"**#{alert['id']} {alert.get('rule')}** — {alert.get('summary') or ''}  \n"
        f"state **{alert['state']}**{' (' + ', '.join(handled) + ')' if handled else ''}, severity "
        f"**{alert.get('severity')}**, value **{value_text(alert.get('value'), unit)}**"
        + (
            f" (threshold {rule_doc.get('op')} {value_text(rule_doc.get('threshold'), unit)})"
            if rule_doc
            else ""
        )
    )
    related = dict(labels)
    if not related.get("resource") and is_payment_alert(alert):  # a payment rule's resource is the gateway's
        related["resource"] = PAYMENT_RESOURCE
    where = " · ".join(f"{k} **{related[k]}**" for k in ("resource", "instance", "app") if related.get(k))
    if where:
        st.markdown(f"Related: {where}")
    if rule_doc:
        st.caption(f"Rule {alert.get('rule')}: {condition_text(rule_doc)}")
    runbook = (alert.get("annotations") or {}).get("runbook_url") or (
        (rule_doc or {}).get("annotations") or {}
    ).get("runbook_url")
    if runbook:
        section = runbook_section(runbook)
        if section is not None:
            with st.expander(f"Runbook ({runbook})"):
                st.markdown(section)
        else:
            st.markdown(f"Runbook: [{runbook}]({runbook})")
    chart(
        figures.alert_metric_figure(
            metric.get("points") or [],
            metric.get("threshold"),
            metric.get("op"),
            f"{alert.get('rule')}: value{_over(metric.get('window_s'))}, last 30 min",
            unit,
        ),
        "alert_metric",
    )
    if metric.get("error"):
        st.caption(f"Metric unavailable: {metric['error']}")
    alert_exemplar_links(svc.traces, alert)  # the requests that made it fire
    gateway = svc.gateway_errors(alert)
    if gateway is not None:
        _gateway(gateway)
    left, right = st.columns(2)
    with left:
        st.markdown("**Timeline**")
        st.dataframe(
            [
                {
                    "at (UTC)": _when(e["at"]),
                    "event": e["kind"],
                    "by": e.get("by") or "",
                    "value": "" if e.get("value") is None else value_text(e.get("value"), unit),
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


def _over(window_s: int | None) -> str:
    """What each point of the alert's chart covers: the rule's window (as evaluated), or a bucket."""
    if not window_s:
        return ""
    return f" over {window_s // 60} min" if window_s % 60 == 0 else f" over {window_s} s"


def _gateway(gw) -> None:
    """A payment alert's related resource: the gateway's recent failures over the alert's window."""
    show_errors(gw.errors)
    share = f"{gw.failure_pct:.1f} %" if gw.failure_pct is not None else "–"
    st.markdown(
        f"**Recent gateway errors** (payment.charge, {gw.start:%H:%M:%S}–{gw.end:%H:%M:%S} UTC): "
        f"**{gw.failed:,}** of {gw.charges:,} charges failed ({share}) · "
        f"{gw.breaker_blocked:,} calls blocked by the breaker · {gw.guard_errors:,} guard errors"
    )
    named = [row for row in gw.by_instance if row["instance"] != "all"]  # "all": the events name no node
    if gw.recent:
        left, right = st.columns([3, 2]) if named else (st.container(), None)
        left.dataframe(
            [{**row, "bucket": f"{row['bucket']:%H:%M:%S}"} for row in gw.recent],
            hide_index=True,
            column_config={"bucket": st.column_config.TextColumn(f"from (UTC, {gw.bucket_s} s)")},
        )
        if right is not None:
            right.dataframe(gw.by_instance, hide_index=True)
    else:
        st.caption("No failed charge, breaker block or guard error in the alert's window.")
    st.caption(
        "Failed charges from the journal (payments.failure, per node where the events name it); the "
        "breaker's blocks and the guard's errors from payment.charge's statistics; decline reasons are "
        "on the journal's PaymentFailed events: `tradeguard events tail --name PaymentFailed`."
    )


with tab_detail:
    current = svc.open_alerts()  # read fresh every run: only open alerts can be picked
    by_id = {a["id"]: a for a in current}
    _forget_closed(set(by_id))
    picked = st.session_state.get("alert_pick")
    seen = st.session_state.get(SEEN) or {}
    if picked is not None and picked not in by_id:
        gone = seen.get("rule") if seen.get("id") == picked else None
        st.warning(
            f"Alert #{picked}{' ' + gone if gone else ''} is no longer open (it was "
            f"{seen.get('state', 'open') if seen.get('id') == picked else 'open'} when you opened it); "
            "nothing was done to it. Pick another alert.",
            icon=":material/info:",
        )
        del st.session_state["alert_pick"]
        st.session_state.pop(SEEN, None)
        default_index = None
    else:
        default_index = 0
    if not current:
        st.caption("No alert is open. Past alerts are in the History tab.")
        st.session_state[LISTED] = {"ids": [], "picked": None, "look": None}
    else:
        chosen = st.selectbox(
            "Alert (open alerts only)",
            list(by_id),
            index=default_index,
            key="alert_pick",
            placeholder="Pick an open alert",
            format_func=lambda i: _pick_label(by_id[i]) if i in by_id else f"#{i}",
        )
        shown = None
        if chosen is not None and chosen in by_id:
            timeline, metric = svc.alert_detail(chosen)
            alert = timeline["alert"]
            shown = alert_actions.look(alert)
            _detail(alert, metric, timeline)
            if alert["state"] in ("firing", "pending"):
                _actions(alert)
            __import__("console.views.proposal", fromlist=["_"]).proposal_block(svc, alert)  # issue 17
        st.session_state[LISTED] = {"ids": sorted(by_id), "picked": chosen, "look": shown}

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
            placeholder=f"alertname={EXAMPLE_ALERT}, instance=node-1",
            help="comma-separated label=value (also !=, =~ regex, !~)",
        )
        duration = st.selectbox("For", SILENCE_DURATIONS, index=1, key="silence_for")
        s_comment = st.text_input("Comment *", key="silence_comment", placeholder="why it is silenced")
        create = st.form_submit_button("Silence", type="primary")
    if create:
        try:
            svc.silence(
                [m for m in (matchers or "").split(",") if m.strip()],
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
            c1, c3 = st.columns([4, 1])
            sid = c1.selectbox("Silence", [s["id"] for s in silences], key="expire_id")
            expire = c3.form_submit_button("Expire now")
        if expire:
            try:
                svc.expire_silence(int(sid))
            except ActionFailed as exc:
                for e in exc.errors:
                    st.error(f"{e.path or 'expire'}: {e.message}", icon=":material/error:")
            else:
                st.session_state.alerts_flash = f"Silence {sid} expired."
                st.rerun()

with tab_oncall:
    try:
        on_call_now = svc.alerts.on_call_now()
    except Exception as exc:
        on_call_now = []
        st.warning(f"Could not read who is on call: {error_text(exc)}", icon=":material/warning:")
    if on_call_now:
        st.dataframe(
            [
                {
                    "rotation": o["rotation"],
                    "on call": o.get("name") or "nobody",
                    "email": o.get("email") or "",
                    "override": "yes" if o.get("override") else "",
                    "until (UTC)": _when(o.get("shift_end")),
                }
                for o in on_call_now
            ],
            hide_index=True,
        )
    else:
        st.caption("Nobody is on call: no rotation is configured. Put someone on call below.")
    with st.form("oncall_form"):
        st.markdown("**Put someone on call now**")
        o1, o2, o3 = st.columns([2, 2, 1])
        rotations = [o["rotation"] for o in on_call_now] or ["primary"]
        rotation = o1.selectbox("Rotation", rotations, key="oncall_rotation", accept_new_options=True)
        who = o2.text_input("Who goes on call *", key="oncall_who")
        span = o3.selectbox("For", ON_CALL_DURATIONS, index=2, key="oncall_for")
        email = st.text_input("Their email", key="oncall_email", placeholder="for on-call escalation mails")
        set_it = st.form_submit_button("Put on call", type="primary")
    if set_it:
        try:
            entry = alert_actions.set_on_call(
                svc.alerts,
                who or "",
                by=svc.principal.name,
                duration=span or "8h",
                rotation=str(rotation or "primary"),
                email=email or "",
            )
        except ActionFailed as exc:
            for e in exc.errors:
                st.error(f"{e.path or 'on call'}: {e.message}", icon=":material/error:")
        else:
            st.session_state.alerts_flash = (
                f"{entry.get('name')} is on call for {entry['rotation']} "
                f"until {_when(entry.get('shift_end'))} UTC."
            )
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
