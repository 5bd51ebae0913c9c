"""Alert rules: list; create, edit (form or YAML), enable/disable, delete; diff against the rule in force;
back-test over recorded metrics before saving; history with rollback.

Not live (an editor must not move under the cursor). A run reads the rules once (1 alert-service read);
the History tab adds 1 read; a back-test reads the metric store once per aggregate of the rule's query
shape (twice: the proposed rule and the rule in force). Validation is the YAML import's: a bad rule is
refused whole, each error naming its field. Every change is a new version recorded with your name and why.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from alerts.model import OPS, POLICIES, SEVERITIES
from collectors.query import AGGREGATES
from console.runtime import chart, services
from console.services import AlertRuleRefused, FieldError
from console.services.alert_rules import (
    BACKTEST_HOURS,
    canonical_rule,
    parse_rule_yaml,
    rule_yaml,
    version_diff_lines,
)
from console.services.common import error_text
from dashboards.backtest import backtest_figure

NEW = "(new rule)"
ss = st.session_state
svc = services()
st.title("Alert rules")

try:
    rules = svc.alert_rules_list()
except Exception as exc:  # the control DB is down: nothing else works here
    st.error(f"The alert rules cannot be read: {error_text(exc)}")
    st.stop()
by_name = {r["name"]: {k: v for k, v in r.items() if k != "open"} for r in rules}

_flash: tuple[str, str] | None = ss.pop("ar_flash", None)  # (tab, message) of the last change


def flash(tab: str) -> None:
    """The last change's confirmation next to the button that made it (the page is scrolled there)."""
    if _flash and _flash[0] == tab:
        st.success(_flash[1], icon=":material/check_circle:")


def show_errors(errors: list[FieldError], where: str = "The rule was refused") -> None:
    if errors:
        st.error(
            f"**{where}** (nothing was saved):\n\n"
            + "\n".join(f"- `{e.path or 'rule'}`: {e.message}" for e in errors),
            icon=":material/error:",
        )


def _query_text(q: dict[str, Any]) -> str:
    what = f"{q.get('measurement', '')}.{q.get('field') or 'ratio'}"
    return f"{q.get('aggregate', '')}({what}) over {q.get('window', '')}"


tab_list, tab_edit, tab_history = st.tabs(["Rules", "Edit & back-test", "History"], key="ar_tab")

# ------------------------------------------------------------------ list, enable/disable, delete
with tab_list:
    if not rules:
        st.info(
            "**No alert rules yet.** Create one on the *Edit & back-test* tab.", icon=":material/edit_note:"
        )
    else:
        rows = []
        for r in rules:
            q = r.get("query") or {}
            rows.append(
                {
                    "name": r["name"],
                    "enabled": r.get("enabled", True) is not False,
                    "severity": r.get("severity", ""),
                    "query": _query_text(q) if q else r.get("kind", ""),
                    "condition": f"{r.get('op', '')} {r.get('threshold', '')}",
                    "for": r.get("for", ""),
                    "firing": r.get("open", {}).get("firing", 0),
                    "pending": r.get("open", {}).get("pending", 0),
                }
            )
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        st.caption(f"{len(rules)} rule(s); each change is a new version (see **History**).")
        st.subheader("Enable, disable or delete")
        c1, c2 = st.columns([2, 3])
        pick = c1.selectbox("Rule", list(by_name), key="ar_list_pick")
        who = svc.principal.name
        why = c2.text_input("Why", key="ar_list_why", placeholder="the reason, kept in the history")
        enabled = by_name[pick].get("enabled", True) is not False if pick else True
        b1, b2, _ = st.columns([1, 1, 4])
        toggle = b1.button("Disable" if enabled else "Enable", key="ar_toggle")
        remove = b2.button("Delete", key="ar_delete", type="secondary")
        if pick and (toggle or remove):
            try:
                if toggle:
                    svc.alert_rule_set_enabled(pick, not enabled, by=who, why=why or "")
                    ss.ar_flash = ("list", f"Rule {pick} {'disabled' if enabled else 'enabled'} by {who}.")
                else:
                    svc.alert_rule_delete(pick, by=who, why=why or "")
                    ss.ar_flash = ("list", f"Rule {pick} deleted by {who}.")
                st.rerun()
            except AlertRuleRefused as exc:
                show_errors(exc.errors, "Refused")
        flash("list")


# ------------------------------------------------------------------ edit, diff, back-test, save
def _form(base: dict[str, Any], key: str) -> dict[str, Any]:
    """The common fields as widgets; everything else of ``base`` (labels, ratio …) is kept as is."""
    doc = copy.deepcopy(base)
    q = dict(doc.get("query") or {"measurement": "resource_stats", "aggregate": "sum", "window": "1m"})
    c1, c2, c3 = st.columns(3)
    doc["name"] = c1.text_input("name *", value=doc.get("name", ""), key=f"{key}_name")
    q["measurement"] = c2.text_input("query.measurement *", value=q.get("measurement", ""), key=f"{key}_m")
    if "ratio" in q:
        c3.text_input(
            "query.ratio",
            value=yaml.safe_dump(q["ratio"], default_flow_style=True).strip(),
            key=f"{key}_ratio",
            disabled=True,
            help="a ratio query: edit it in YAML",
        )
    else:
        q["field"] = c3.text_input("query.field *", value=q.get("field") or "", key=f"{key}_f")
    c1, c2, c3 = st.columns(3)
    aggs = list(AGGREGATES)
    q["aggregate"] = c1.selectbox(
        "query.aggregate",
        aggs,
        index=aggs.index(q.get("aggregate", "sum")) if q.get("aggregate") in aggs else 0,
        key=f"{key}_agg",
    )
    q["window"] = c2.text_input("query.window", value=str(q.get("window", "1m")), key=f"{key}_w")
    group_by = c3.text_input(
        "query.group_by",
        value=", ".join(q.get("group_by") or []),
        key=f"{key}_gb",
        help="comma-separated tags",
    )
    q["group_by"] = [g.strip() for g in group_by.split(",") if g.strip()]
    if not q["group_by"]:
        q.pop("group_by")
    where = st.text_input(
        "query.where",
        value=yaml.safe_dump(q["where"], default_flow_style=True).strip() if q.get("where") else "",
        key=f"{key}_where",
        placeholder="{resource: order.place}",
    )
    if where.strip():
        try:
            q["where"] = yaml.safe_load(where)
        except yaml.YAMLError:
            q["where"] = where  # validation names the field
    else:
        q.pop("where", None)
    doc["query"] = q
    c1, c2, c3, c4 = st.columns(4)
    ops = list(OPS)
    doc["op"] = c1.selectbox(
        "op", ops, index=ops.index(doc.get("op", ">")) if doc.get("op") in ops else 0, key=f"{key}_op"
    )
    threshold = c2.text_input("threshold *", value=str(doc.get("threshold", "")), key=f"{key}_th")
    try:
        doc["threshold"] = float(threshold)
    except ValueError:
        doc["threshold"] = threshold  # validation names the field
    doc["for"] = c3.text_input("for", value=str(doc.get("for", "0s")), key=f"{key}_for")
    sev = list(SEVERITIES)
    doc["severity"] = c4.selectbox(
        "severity",
        sev,
        index=sev.index(doc.get("severity", "warning")) if doc.get("severity") in sev else 1,
        key=f"{key}_sev",
    )
    c1, c2 = st.columns([1, 3])
    pol = list(POLICIES)
    doc["no_data"] = c1.selectbox(
        "no_data",
        pol,
        index=pol.index(doc.get("no_data", "normal")) if doc.get("no_data") in pol else 1,
        key=f"{key}_nd",
    )
    summary = c2.text_input(
        "annotations.summary", value=(doc.get("annotations") or {}).get("summary", ""), key=f"{key}_sum"
    )
    if summary:
        doc["annotations"] = {**(doc.get("annotations") or {}), "summary": summary}
    return doc


with tab_edit:
    options = [NEW, *by_name]
    if (nxt := ss.pop("ar_edit_next", None)) in options:
        ss.ar_edit_pick = nxt  # the rule just saved (set before the widget exists)
    chosen = st.selectbox("Rule to edit", options, key="ar_edit_pick")
    original = None if chosen == NEW else chosen
    in_force = by_name.get(chosen) if original else None
    base = in_force or {
        "name": "",
        "query": {"measurement": "resource_stats", "field": "error", "aggregate": "sum", "window": "1m"},
        "op": ">",
        "threshold": 0,
        "for": "1m",
        "severity": "warning",
    }
    mode = st.segmented_control("Edit as", ["Form", "YAML"], default="Form", key="ar_mode") or "Form"
    key = "ar_" + hashlib.sha1(chosen.encode()).hexdigest()[:8]  # fresh widgets per rule
    proposed: dict[str, Any] | None
    parse_errors: list[FieldError] = []
    if mode == "Form":
        proposed = _form(base, key)
    else:
        shown = rule_yaml(base)
        height = min(640, 26 * (shown.count("\n") + 2))  # the whole rule, without scrolling
        text = st.text_area("Rule (YAML)", value=shown, height=height, key=f"{key}_yaml")
        proposed, parse_errors = parse_rule_yaml(text)
    errors = parse_errors or (svc.alert_rule_validate(proposed) if proposed is not None else [])
    if errors:
        show_errors(errors, "This rule is not valid")
    elif proposed is not None:
        st.markdown("**Diff against the rule in force**")
        canon = canonical_rule(proposed)
        text_diff = svc.alert_rule_diff(in_force, canon)
        if text_diff:
            st.code(text_diff, language="diff")
        else:
            st.caption("No change: the rule in force is identical.")

        st.markdown("**Back-test** — replay recorded metrics through the real evaluator")
        c1, c2, c3 = st.columns([1, 1, 2])
        hours = c1.selectbox(
            "Range",
            BACKTEST_HOURS,
            index=BACKTEST_HOURS.index(24),
            key="ar_bt_hours",
            format_func=lambda h: f"last {h} h",
        )
        interval = c2.number_input(
            "Step (s)", min_value=1, max_value=3600, value=10, step=1, key="ar_bt_step"
        )
        if c3.button("Run back-test", key="ar_bt_run", icon=":material/history:"):
            try:
                ss.ar_backtest = {
                    "rule": canon,
                    "result": svc.alert_rule_backtest(canon, hours=float(hours), interval_s=int(interval)),
                }
            except AlertRuleRefused as exc:
                ss.ar_backtest = None
                show_errors(exc.errors, "The back-test failed")
        bt = ss.get("ar_backtest")
        if bt and bt["rule"] == canon:
            res = bt["result"]
            new, cur = res["proposed"], res.get("current")
            m = st.columns(4)
            m[0].metric("Proposed: fired", new["counts"]["firing"])
            m[1].metric("Proposed: went pending", new["counts"]["pending"])
            m[2].metric("In force: fired", cur["counts"]["firing"] if cur else "—")
            m[3].metric("Back-test time", f"{res['duration_s']:.2f} s")
            if new.get("error"):
                st.warning(f"Back-test of the proposed rule: {new['error']}", icon=":material/warning:")
            chart(
                backtest_figure(new, cur, f"Back-test of {canon['name']} ({res['steps']} steps)"), "ar_bt_fig"
            )
            if new["events"]:
                st.dataframe(
                    pd.DataFrame(
                        [
                            {
                                "at": e["at"],
                                "transition": e["kind"],
                                "series": ", ".join(
                                    f"{k}={v}"
                                    for k, v in e["labels"].items()
                                    if k not in ("alertname", "severity")
                                ),
                                "value": e["value"],
                            }
                            for e in new["events"]
                        ]
                    ),
                    hide_index=True,
                    width="stretch",
                )
            else:
                st.caption("The proposed rule would not have changed state in this range.")

        st.markdown(f"**Save** as {svc.principal.name}")
        c1, _ = st.columns([2, 1])
        who = svc.principal.name
        why = c1.text_input("Why", key="ar_edit_why", placeholder="the reason, kept in the history")
        if st.button("Create rule" if original is None else "Save rule", key="ar_save", type="primary"):
            try:
                out = svc.alert_rule_save(proposed, by=who, why=why or "", original=original)
                ss.ar_flash = (
                    "edit",
                    f"Rule {out['rule']['name']} saved by {who}: alert rules version {out['version']}."
                    if out["changed"]
                    else "Nothing changed.",
                )
                ss.ar_edit_next = out["rule"]["name"]
                st.rerun()
            except AlertRuleRefused as exc:
                show_errors(exc.errors)
    flash("edit")

# ------------------------------------------------------------------ history, rollback
with tab_history:
    try:
        versions = svc.alert_rules_history()
    except Exception as exc:
        versions = []
        st.error(f"The history cannot be read: {error_text(exc)}")
    if not versions:
        st.info(
            "No versions yet: the first change of the alert rules makes version 1.", icon=":material/history:"
        )
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "version": v["version"],
                        "at (UTC)": str(v["created_at"])[:19].replace("T", " "),
                        "by": v["created_by"],
                        "why": v["why"],
                        "rules": v["rules"],
                        "restored from": str(v["restored_from"]) if v["restored_from"] else "",
                        "changes": "; ".join(version_diff_lines(v["diff"])) or "—",
                    }
                    for v in versions
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        numbers = [v["version"] for v in versions]
        n = st.selectbox("Version", numbers, key="ar_hist_pick")
        chosen_v = next(v for v in versions if v["version"] == n)
        st.code("\n".join(version_diff_lines(chosen_v["diff"])) or "no change of the rules", language="diff")
        st.markdown(
            f"**Roll back to version {n}** (restores its {chosen_v['rules']} rule(s) as a new version)"
        )
        c1, _ = st.columns([2, 1])
        who = svc.principal.name
        why = c1.text_input("Why", key="ar_rb_why", placeholder="the reason, kept in the history")
        if st.button(f"Roll back to version {n}", key="ar_rollback", disabled=n == numbers[0]):
            try:
                out = svc.alert_rules_rollback(int(n), by=who, why=why or "")
                ss.ar_flash = (
                    "history",
                    f"Rolled back to version {n} by {who}: version {out['version']} is in force.",
                )
                st.rerun()
            except AlertRuleRefused as exc:
                show_errors(exc.errors, "Rollback refused")
        flash("history")
