"""Resources: every guarded resource with pass / block / error / RT, and one resource's detail.

Loading the page issues 2 metric-store queries (totals and mean RT per resource);
the detail refreshes every 5 s inside ``st.fragment(run_every=5)`` with 2 metric-store
queries and 1 rule-store read. Session state holds only the chosen range and resource.
"""

from __future__ import annotations

import streamlit as st

from console.rule_forms import table_rows
from console.runtime import chart, services, show_errors
from console.services import RULE_TYPES
from console.views.blocked import show_blocked
from dashboards import figures
from dashboards.ranges import DEFAULT_RANGE, RANGE_LABELS, RANGES

DETAIL_REFRESH_S = 5

st.title("Resources")
svc = services()
range_key = (
    st.segmented_control(
        "Time range",
        options=list(RANGES),
        format_func=lambda k: RANGE_LABELS[k],
        default=DEFAULT_RANGE,
        key="resources_range",
    )
    or DEFAULT_RANGE
)
data = svc.resources(range_key)
show_errors(data.errors)

if not data.rows:
    st.info(
        f"**No data yet.** No guarded resource recorded a call in the last {RANGE_LABELS[range_key]}.",
        icon=":material/hourglass_empty:",
    )
    st.stop()

table = [
    {
        "resource": r.resource,
        "passed / s": r.pass_qps,
        "passed": r.passed,
        "blocked": r.blocked,
        "blocked %": r.block_share_pct,
        "flow": r.block_flow,
        "param": r.block_param,
        "system": r.block_system,
        "breaker": r.block_breaker,
        "errors": r.error,
        "error %": r.error_share_pct,
        "mean RT (ms)": r.rt_avg_ms,
    }
    for r in data.rows
]
st.caption(
    f"Totals over the last {RANGE_LABELS[range_key]}, all instances; blocked resources first. "
    "Click a column header to sort."
)
st.dataframe(
    table,
    hide_index=True,
    key="resources_table",
    height=min(36 * (len(table) + 1) + 4, 620),  # every resource visible up to ~16 rows
    column_config={
        "passed / s": st.column_config.NumberColumn(format="%.2f"),
        "blocked %": st.column_config.ProgressColumn(min_value=0, max_value=100, format="%.1f %%"),
        "error %": st.column_config.NumberColumn(format="%.2f %%"),
        "mean RT (ms)": st.column_config.NumberColumn(format="%.1f"),
    },
)
show_blocked(svc, range_key)

names = [r.resource for r in data.rows]
resource = st.selectbox("Resource detail", names, key="resources_selected")


@st.fragment(run_every=DETAIL_REFRESH_S)
def detail(resource: str, range_key: str) -> None:
    d = svc.resource_detail(resource, range_key)
    show_errors(d.errors)
    chart(figures.resource_figure(d.rates, d.rt_ms, resource), "res_detail")
    st.subheader(f"Rules on {resource}")
    if d.rule_version is None:
        st.caption("No rules applied yet.")
    elif not d.rules:
        st.caption(f"No rule of version {d.rule_version} names {resource}.")
    else:
        st.caption(f"Rule version {d.rule_version} in force. Change them on the Rules page.")
        for kind in RULE_TYPES:
            if kind in d.rules:
                st.markdown(f"**{kind}**")
                st.dataframe(table_rows(d.rules[kind], kind), hide_index=True)


if resource:
    detail(resource, range_key)
