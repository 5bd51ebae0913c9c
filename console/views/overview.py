"""Overview: order-flow health, live.

Refreshes inside ``st.fragment(run_every=…)`` (the rest of the page is not re-run): every 2 s
for the 5 and 15 min ranges, 10 s for 1 h, 30 s for 24 h (a 2 s bucket changes every 2 s, a
10 min bucket does not). The headline KPIs are the **last 60 s** (up to 2 s ago); under each,
the chosen range's figure; a KPI past its objective is shown in red. The range includes the
running bucket. Each refresh issues 13 metric-store queries. Over the range: orders placed/paid,
payment outcomes, p50 and p99 RT of order.place, calls per resource (passed/blocked/completed),
the shop's refusals of order.place per reason, last breaker states, GMV per minute, fulfilment
(sub-orders shipped/delivered/received per minute, the ``deliveries`` figure). Over the last
minute: orders, payments, p99 RT, calls. A store without percentiles takes 16 (p50/p99 fall back
to mean/max). "Orders placed" counts per shop (an order split over two shops counts two).
Nothing is kept in session state but the chosen range.
"""

from __future__ import annotations

from datetime import UTC

import streamlit as st

from console.runtime import chart, services, show_errors
from dashboards import figures
from dashboards.figures import refusal_label
from dashboards.ranges import DEFAULT_RANGE, RANGE_LABELS, RANGES

REFRESH_S: dict[str, int] = {"5m": 2, "15m": 2, "1h": 10, "24h": 30}
QUERIES_PER_REFRESH = 13

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
    rng = RANGE_LABELS[range_key]
    goals = data.objectives
    cols = [*st.columns(3), *st.columns(3)]  # two rows of three: no label or delta is cut off
    cols[0].metric(
        "Placed / s (now)",
        _fmt(k["placed_per_s_now"], "{:.1f}"),
        help=f"orders placed per second over the last {k['now_span_s']:.0f} s",
    )
    cols[0].caption(f"{rng}: {_fmt(k['placed_per_s_range'], '{:.1f}')} / s")
    cols[1].metric(
        f"Orders placed, per shop ({rng})",
        _fmt(k["placed"], "{:,.0f}"),
        help="orders the trading core placed (business figures from the journal), counted per shop: "
        "an order split over two shops counts two. Not the calls the guard passed.",
    )
    reasons = ", ".join(
        f"{refusal_label(reason)} {count:,.0f}" for reason, count in data.refused_by_reason.items() if count
    )
    cols[1].caption(
        f"order.place calls the guard passed: {_fmt(k['guard_passed'], '{:,.0f}')} · "
        f"refused by the shop: {_fmt(k['refused'], '{:,.0f}')}" + (f" ({reasons})" if reasons else "")
    )
    pay_goal = goals.get("payment_success_pct")
    pay_now = k["payment_success_pct_now"]
    pay_breach = "payment_success_pct_now" in data.breaches
    cols[2].metric(
        "Payment success (now)",
        _fmt(pay_now, "{:.1f} %"),
        delta=(f"{pay_now - pay_goal:+.1f} pts vs objective {pay_goal:g} %" if pay_breach else None),
        delta_color="normal",
        border=pay_breach,
        help=f"charges that succeeded in the last {k['now_span_s']:.0f} s"
        + (f"; objective ≥ {pay_goal:g} %" if pay_goal is not None else ""),
    )
    cols[2].caption(f"{rng}: {_fmt(k['payment_success_pct'], '{:.1f} %')}")
    rt_goal = goals.get("rt_p99_ms")
    rt_now = k["rt_p99_ms_now"]
    rt_breach = "rt_p99_ms_now" in data.breaches
    cols[3].metric(
        "p99 RT of order.place (now)",
        _fmt(rt_now, "{:,.0f} ms"),
        delta=(f"{rt_now - rt_goal:+,.0f} ms over objective {rt_goal:g} ms" if rt_breach else None),
        delta_color="inverse",
        border=rt_breach,
        help=f"p99 of the per-second maxima of the last {k['now_span_s']:.0f} s"
        + (f"; objective ≤ {rt_goal:g} ms" if rt_goal is not None else ""),
    )
    cols[3].caption(f"{rng} peak: {_fmt(k['rt_p99_ms'], '{:,.0f} ms')}")
    cols[4].metric(
        "Blocked share (now)",
        _fmt(k["blocked_share_pct_now"], "{:.1f} %"),
        help=f"blocked calls ÷ (passed + blocked), all resources, last {k['now_span_s']:.0f} s",
    )
    cols[4].caption(f"{rng}: {_fmt(k['blocked_share_pct'], '{:.1f} %')}")
    cols[5].metric("Breakers open", _fmt(k["breakers_open"], "{:.0f}"))
    if data.breaches:
        past = [
            name
            for key, name in (
                ("payment_success_pct_now", "payment success"),
                ("rt_p99_ms_now", "p99 response time"),
            )
            if key in data.breaches
        ]
        st.error(f"Past objective now: {', '.join(past)}.", icon=":material/error:")

    left, right = st.columns(2)
    with left:
        chart(figures.orders_figure(data.orders), "ov_orders")
        chart(figures.latency_figure(data.rt, labels=data.rt_labels), "ov_rt")
        chart(figures.gmv_figure(data.gmv, currency=svc.currency), "ov_gmv")
    with right:
        chart(figures.payment_success_figure(data.payment_success), "ov_pay")
        chart(figures.blocked_figure(data.blocked), "ov_blocked")
        chart(figures.deliveries_figure(data.deliveries), "ov_deliveries")
        st.caption(
            f"Fulfilment ({rng}), sub-orders: shipped {_fmt(k['shipped'], '{:,.0f}')} · "
            f"delivered {_fmt(k['delivered'], '{:,.0f}')} · received {_fmt(k['received'], '{:,.0f}')}"
        )
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
    updated = data.now_window.end if data.now_window else data.window.until
    st.caption(
        f"Updated {updated:%Y-%m-%d %H:%M:%S} UTC · KPIs (now): the last {k['now_span_s']:.0f} s "
        f"(to {k['now_lag_s']:.0f} s ago, the collectors' write delay) · "
        f"range {data.window.label()}, {data.window.bucket_s} s buckets (the last one still running) · "
        f"{data.queries} queries per refresh, every {REFRESH_S[range_key]} s"
    )


live(range_key)
