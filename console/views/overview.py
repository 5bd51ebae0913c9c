"""Overview: order-flow health, live.

Refreshes inside ``st.fragment(run_every=…)`` (the rest of the page is not re-run): every 2 s
for the 5 and 15 min ranges, 10 s for 1 h, 30 s for 24 h (a 2 s bucket changes every 2 s, a
10 min bucket does not). Each refresh issues 7 metric-store queries — orders placed/paid, payment
outcomes, p50 and p99 RT of order.place, calls passed/blocked by reason, last breaker
states, GMV per minute — or 9 on a store without percentiles (p50/p99 fall back to
mean/max). Nothing is kept in session state but the chosen range.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from console.runtime import chart, services, show_errors
from dashboards import figures
from dashboards.ranges import DEFAULT_RANGE, RANGE_LABELS, RANGES

REFRESH_S: dict[str, int] = {"5m": 2, "15m": 2, "1h": 10, "24h": 30}
QUERIES_PER_REFRESH = 7

st.title("Order-flow health")
range_key = (
    st.segmented_control(
        "Time range",
        options=list(RANGES),
        format_func=lambda k: RANGE_LABELS[k],
        default=DEFAULT_RANGE,
        key="overview_range",
    )
    or DEFAULT_RANGE
)


def _fmt(value: float | None, fmt: str, none: str = "–") -> str:
    return none if value is None else fmt.format(value)


@st.fragment(run_every=REFRESH_S[range_key])
def live(range_key: str) -> None:
    svc = services()
    data = svc.overview(range_key)
    show_errors(data.errors)
    if not data.has_data:
        st.info(
            "**No data yet.** Nothing was recorded in the last "
            f"{RANGE_LABELS[range_key]}: start a node (`tradeguard node`) and some traffic "
            "(`tradeguard traffic`), or pick a longer range. This page refreshes by itself.",
            icon=":material/hourglass_empty:",
        )
    k = data.kpis
    cols = st.columns(6)
    cols[0].metric(
        "Placed / s (now)",
        _fmt(k["placed_per_s_now"], "{:.1f}"),
        help=f"orders placed per second, mean of the last {k['now_span_s']:.0f} s",
    )
    cols[1].metric(f"Orders placed ({RANGE_LABELS[range_key]})", _fmt(k["placed"], "{:,.0f}"))
    cols[2].metric("Payment success", _fmt(k["payment_success_pct"], "{:.1f} %"))
    cols[3].metric(
        "p99 RT of order.place",
        _fmt(k["rt_p99_ms"], "{:,.0f} ms"),
        help="the highest bucket p99 in the range (over per-second maxima)",
    )
    cols[4].metric(
        "Blocked share",
        _fmt(k["blocked_share_pct"], "{:.1f} %"),
        help="blocked calls ÷ (passed + blocked), all resources",
    )
    cols[5].metric("Breakers open", _fmt(k["breakers_open"], "{:.0f}"))

    left, right = st.columns(2)
    with left:
        chart(figures.orders_figure(data.orders), "ov_orders")
        chart(figures.latency_figure(data.rt), "ov_rt")
        chart(figures.gmv_figure(data.gmv, currency=svc.currency), "ov_gmv")
    with right:
        chart(figures.payment_success_figure(data.payment_success), "ov_pay")
        chart(figures.blocked_figure(data.blocked), "ov_blocked")
        st.subheader("Breakers open")
        if data.breakers_open:
            st.dataframe(
                [
                    {
                        "resource": b.resource,
                        "instance": b.instance,
                        "state": b.state.replace("_", "-"),
                        "since (UTC)": b.since.astimezone(UTC).strftime("%H:%M:%S"),
                    }
                    for b in data.breakers_open
                ],
                hide_index=True,
            )
        else:
            st.success("All breakers closed", icon=":material/check_circle:")
    st.caption(
        f"Updated {datetime.now(UTC):%H:%M:%S} UTC · window {data.window.start:%H:%M:%S}–"
        f"{data.window.end:%H:%M:%S} UTC, {data.window.bucket_s} s buckets · "
        f"{data.queries} queries per refresh, every {REFRESH_S[range_key]} s"
    )


live(range_key)
