"""Resources: every guarded resource with pass / block / error / RT, and one resource's detail.

The whole page area below the range picker — the table, the picker and the detail — refreshes
inside ``st.fragment(run_every=…)`` (every 5 s; 10 s for 1 h, 30 s for 24 h) and says "as of"
what time. A refresh issues 4 metric-store queries for the table (calls per resource and bucket,
mean RT per resource, orders placed, the shop's refusals per resource and reason) and 3 for the
detail (calls, RT, refusals) plus 1 rule-store read. Rates divide by the seconds each resource's
data covers, not the whole range. "Passed" is what the guard let through; orders placed (per shop)
and the shop's refusals (recorded by the nodes, per reason) are shown apart.
Session state holds only the chosen range and resource.
"""

from __future__ import annotations

import streamlit as st

from console.rule_forms import table_rows
from console.runtime import chart, services, show_errors
from console.services import RULE_TYPES
from console.trace_links import resource_trace_links
from console.views.blocked import show_blocked
from dashboards import figures
from dashboards.figures import refusal_label
from dashboards.queries import ORDER_PLACE
from dashboards.ranges import DEFAULT_RANGE, RANGE_LABELS, RANGES

REFRESH_S: dict[str, int] = {"5m": 5, "15m": 5, "1h": 10, "24h": 30}

st.title("Resources")
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


def _table(data) -> list[dict]:
    return [
        {
            "resource": r.resource,
            "passed / s": r.pass_qps,
            "calls the guard passed": r.passed,
            "completed": r.success,
            "refused by the shop": r.refused,
            "errors": r.error,
            "error %": r.error_share_pct,
            "blocked": r.blocked,
            "blocked %": r.block_share_pct,
            "flow": r.block_flow,
            "param": r.block_param,
            "system": r.block_system,
            "breaker": r.block_breaker,
            "mean RT (ms)": r.rt_avg_ms,
            "seconds covered": round(r.covered_s),
        }
        for r in data.rows
    ]


@st.fragment(run_every=REFRESH_S[range_key])
def live(range_key: str) -> None:
    svc = services()
    data = svc.resources(range_key)
    show_errors(data.errors)
    label = RANGE_LABELS[range_key]
    if not data.rows:
        st.info(
            f"**No data yet.** No guarded resource recorded a call in the last {label} "
            f"(as of {data.as_of:%H:%M:%S} UTC). This page refreshes by itself.",
            icon=":material/hourglass_empty:",
        )
        return
    place = next((r for r in data.rows if r.resource == ORDER_PLACE), None)
    c = st.columns(3)
    c[0].metric(
        f"Orders placed, per shop ({label})",
        f"{data.orders_placed:,}",
        help="orders the trading core placed (business figures, the same as on Overview), counted per "
        "shop: an order split over two shops counts two",
    )
    c[1].metric(
        f"{ORDER_PLACE} calls the guard passed",
        f"{place.passed:,}" if place else "–",
        help="calls let through by the flow rules; a passed call may still be refused by the shop",
    )
    c[2].metric(
        f"{ORDER_PLACE} refused by the shop",
        f"{place.refused:,}" if place else "–",
        help=f"{ORDER_PLACE} requests the shop refused (409/422: out of stock, purchase limit, …), "
        "recorded by every node per reason (the refusals measurement). The guard counts them as "
        "passed and successful: they are part of the calls the guard passed.",
    )
    reasons = " · ".join(
        f"{refusal_label(reason)}: {count:,}" for reason, count in data.refused_by_reason.items() if count
    )
    if reasons:
        c[2].caption(reasons)
    table = _table(data)
    st.caption(
        f"As of **{data.as_of:%Y-%m-%d %H:%M:%S} UTC** · totals over {data.window.label()}, all instances; "
        "blocked or failing resources first. Rates divide by the seconds each resource's data covers. "
        "Click a column header to sort."
    )
    st.dataframe(
        table,
        hide_index=True,
        key="resources_table",
        height=min(36 * (len(table) + 1) + 4, 620),  # every resource visible up to ~16 rows
        column_config={
            "resource": st.column_config.TextColumn(pinned=True),
            "passed / s": st.column_config.NumberColumn(
                format="%.2f", help="calls the guard passed ÷ seconds covered", width="small"
            ),
            "blocked %": st.column_config.ProgressColumn(
                min_value=0, max_value=100, format="%.1f %%", width="small"
            ),
            "error %": st.column_config.NumberColumn(format="%.1f %%", width="small"),
            "mean RT (ms)": st.column_config.NumberColumn(format="%.1f", width="small"),
            **{
                name: st.column_config.NumberColumn(width="small")
                for name in ("completed", "errors", "blocked", "flow", "param", "system", "breaker",
                             "seconds covered")
            },
        },
    )
    show_blocked(svc, range_key)  # who is blocked: top origins, client IPs, buyers, SKUs
    names = [r.resource for r in data.rows]
    resource = st.selectbox("Resource detail", names, key="resources_selected")
    if resource:
        detail(svc, resource, range_key)


def detail(svc, resource: str, range_key: str) -> None:
    d = svc.resource_detail(resource, range_key)
    show_errors(d.errors)
    chart(figures.resource_figure(d.rates, d.rt_ms, resource, refused=d.refused), "res_detail")
    resource_trace_links(resource)  # its blocked / slow / error requests on the Traces page
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


live(range_key)
