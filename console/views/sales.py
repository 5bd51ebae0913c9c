"""Sales: one shop's figures over a date range, each compared with the previous period of the same length.

A merchant picks among its own shops; sre and admin pick any shop with orders. Every figure comes
through the console services, which refuse a shop the signed-in user may not read — whatever the
URL's ``?shop=`` or the session state says. A run issues 8 reads (6 metric-store queries, 2 per-SKU
read-model reads); the "today" strip refreshes itself every 5 s with 2 queries. Fulfilment (sub-orders
shipped, delivered, received in the range, from the ``deliveries`` figure) is shown for this period.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from common.identity import Forbidden
from console.runtime import chart, services, show_errors
from console.services.common import error_text
from dashboards import sales as figures

TODAY_REFRESH_S = 5

svc = services()
currency = svc.currency
st.title("Sales")

shops = svc.sales_shops()
asked = st.query_params.get("shop")
if asked and asked not in shops:
    st.error(
        f"**Shop {asked}: not allowed.** "
        f"{svc.refusal('sales.read', asked) or 'no orders recorded for this shop'}.",
        icon=":material/block:",
    )
if not shops:
    st.info("No shop to show: no orders recorded yet" if svc.may("sales.read") else "No shop.",
            icon=":material/info:")
    st.stop()

today = svc.now().date()
c1, c2 = st.columns([1, 2])
shop = c1.selectbox(
    "Shop", shops, index=shops.index(asked) if asked in shops else 0, key="sales_shop"
)
dates = c2.date_input(
    "Dates (UTC)", value=(today - timedelta(days=6), today), max_value=today, key="sales_dates"
)
if not isinstance(dates, tuple | list) or len(dates) != 2:
    st.info("Pick the last day of the range.", icon=":material/date_range:")
    st.stop()
if shop:
    st.query_params["shop"] = shop

try:
    period = svc.sales_period(dates[0], dates[1])
    report = svc.sales_report(str(shop), period)
except Forbidden as exc:
    st.error(f"**Not allowed.** {error_text(exc)}.", icon=":material/block:")
    st.stop()
except ValueError as exc:
    st.error(f"Dates: {error_text(exc)}", icon=":material/error:")
    st.stop()


@st.fragment(run_every=TODAY_REFRESH_S)
def today_strip(shop: str) -> None:
    try:
        t = svc.sales_today(shop)
    except Forbidden as exc:
        st.error(f"**Not allowed.** {error_text(exc)}.", icon=":material/block:")
        return
    st.markdown(f"**Today** (since {t.since:%Y-%m-%d} 00:00 UTC, live)")
    c = st.columns(5)
    c[0].metric("Net sales today", figures.money(t.totals.net_cents, currency))
    c[1].metric("Orders today", f"{t.totals.placed:,}")
    c[2].metric("Orders, last 5 min", f"{t.last_5min_orders:,}")
    c[3].metric("Units today", f"{t.totals.units:,}")
    conv = t.totals.paid_conversion
    c[4].metric("Paid conversion today", "–" if conv is None else f"{100 * conv:.1f} %")
    show_errors(t.errors)


today_strip(str(shop))
st.divider()

p = report.period
st.caption(
    f"Shop **{report.shop}** · {p.start:%Y-%m-%d} – {p.end - timedelta(days=1):%Y-%m-%d} ({p.days} days) vs "
    f"{p.prev_start:%Y-%m-%d} – {p.prev_end - timedelta(days=1):%Y-%m-%d} · money in {currency}, to the cent"
)
cols = st.columns(len(report.kpis))
for col, k in zip(cols, report.kpis, strict=True):
    col.metric(
        k.label,
        k.text(k.current, currency),
        k.delta_text(),
        delta_color="inverse" if k.label == "Refund rate" else "normal",
        help=f"previous period: {k.text(k.previous, currency)}",
    )
f = report.fulfilment
st.markdown("**Fulfilment in this period** (sub-orders, each step counted when it happened)")
cols = st.columns(5)
cols[0].metric("Shipped", f"{f.shipped:,}")
cols[1].metric("Delivered", f"{f.delivered:,}")
cols[2].metric("Received", f"{f.received:,}",
               help=f"{f.auto_received:,} of them received automatically, days after delivery")
cols[3].metric("Delivery failed", f"{f.failed:,}", help="cash on delivery not collected at the door")
cols[4].metric("Cash collected on delivery", figures.money(f.cod_cents, currency),
               help=f"{f.cod_collected:,} sub-orders paid in cash on delivery")
show_errors(report.errors)

tables = report.tables(currency)


def table(title: str, name: str) -> None:
    st.markdown(f"**{title}**")
    frame = tables[name]
    if frame.empty:
        st.caption("No data in this period.")
    else:
        st.dataframe(frame, hide_index=True, key=f"sales_table_{name}")
    st.download_button(
        f"CSV: {title}",
        frame.to_csv(index=False).encode(),
        file_name=f"sales_{report.shop}_{p.start:%Y%m%d}_{name}.csv",
        mime="text/csv",
        key=f"sales_csv_{name}",
        icon=":material/download:",
        on_click="ignore",  # no rerun: the download is not cancelled by one
    )


table("Summary vs previous period", "summary")
left, right = st.columns(2)
with left:
    table("Sales by channel", "by_channel")
with right:
    table("Sales by transaction type", "by_tx_type")
left, right = st.columns(2)
with left:
    table("Top 10 products by revenue", "top_by_revenue")
with right:
    table("Top 10 products by units", "top_by_units")
left, right = st.columns(2)
with left:
    table("Fulfilment by transaction type", "fulfilment_by_tx_type")
with right:
    table("Shipped by carrier", "shipped_by_carrier")
chart(figures.heatmap_figure(report.heatmap), key="sales_heatmap")
table("Orders by weekday × hour (UTC)", "orders_heatmap")
st.caption(f"{report.queries} reads per page run; the today strip: 2 queries every {TODAY_REFRESH_S} s.")
