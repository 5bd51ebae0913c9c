"""The Sales page: one shop's figures over a date range, compared with the previous period.

Reads (per report): 4 metric-store queries (orders by channel × tx_type and refunds, for this and
the previous period) + 1 hourly orders query for the heat map + 1 deliveries query (fulfilment by
tx_type × carrier, this period) + 2 per-SKU read-model reads (top 10 by revenue and by units).
The "today" strip: 2 metric-store queries.

Whether the caller may read the shop is checked by ``ConsoleServices`` before these run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

import pandas as pd

from collectors.query import MetricStore, Query
from console.services.common import error_text, run_query
from dashboards import queries as panels
from dashboards import sales as figures

ORDERS = "orders"
REFUNDS = "refunds"
ORDER_FIELDS = ("placed", "paid", "cancelled", "gmv", "paid_amount", "discount", "items")
REFUND_FIELDS = ("requested", "completed", "amount")
TOP_N = 10
MAX_DAYS = 366
SHOPS_LOOKBACK = timedelta(days=90)


class SkuSalesPort(Protocol):
    """``domain.adapters.sku_sales.SkuSalesModel``: the per-SKU read model in the trading DB."""

    def top(
        self, shop_id: str, start: datetime, end: datetime, *, by: str = ..., limit: int = ...
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Period:
    start: datetime  # inclusive, UTC midnight
    end: datetime  # exclusive
    prev_start: datetime
    prev_end: datetime

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def period(first: date, last: date) -> Period:
    """Days ``first``..``last`` (inclusive, UTC) and the previous period of the same length."""
    if last < first:
        raise ValueError(f"end date {last} is before start date {first}")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"date range is {(last - first).days + 1} days; at most {MAX_DAYS}")
    start = datetime.combine(first, time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
    length = end - start
    return Period(start, end, start - length, start)


@dataclass
class SalesReport:
    shop: str
    period: Period
    current: figures.Totals
    previous: figures.Totals
    kpis: list[figures.Kpi]
    by_channel: pd.DataFrame
    by_tx_type: pd.DataFrame
    top_revenue: pd.DataFrame
    top_units: pd.DataFrame
    heatmap: pd.DataFrame
    queries: int
    errors: list[str] = field(default_factory=list)
    fulfilment: figures.Fulfilment = field(default_factory=figures.Fulfilment)
    by_fulfilment: pd.DataFrame = field(default_factory=pd.DataFrame)  # per tx_type
    by_carrier: pd.DataFrame = field(default_factory=pd.DataFrame)  # shipped per carrier

    def tables(self, currency: str) -> dict[str, pd.DataFrame]:
        """Every table of the page, by CSV file stem (each gets a download button)."""
        heat = self.heatmap.copy()
        heat.index.name = "weekday"
        return {
            "summary": figures.kpi_frame(self.kpis, currency),
            "by_channel": self.by_channel,
            "by_tx_type": self.by_tx_type,
            "top_by_revenue": self.top_revenue,
            "top_by_units": self.top_units,
            "orders_heatmap": heat.reset_index(),
            "fulfilment_by_tx_type": self.by_fulfilment,
            "shipped_by_carrier": self.by_carrier,
        }


@dataclass(frozen=True)
class TodayStrip:
    shop: str
    totals: figures.Totals
    last_5min_orders: int
    since: datetime
    errors: list[str] = field(default_factory=list)


def _orders(metrics: MetricStore, app: str, shop: str, start: datetime, end: datetime,
            errors: list[str], label: str, *, bucket_s: int | None = None,
            group_by: Sequence[str] = ("channel", "tx_type")) -> list:
    q = Query(ORDERS, ORDER_FIELDS, start, end, "sum", bucket_s, {"app": app, "shop": shop}, tuple(group_by))
    return run_query(metrics, q, errors, label)


def _refunds(metrics: MetricStore, app: str, shop: str, start: datetime, end: datetime,
             errors: list[str], label: str) -> list:
    q = Query(REFUNDS, REFUND_FIELDS, start, end, "sum", None, {"app": app, "shop": shop})
    return run_query(metrics, q, errors, label)


def _top(skus: SkuSalesPort | None, shop: str, p: Period, by: str, errors: list[str]) -> list[dict[str, Any]]:
    if skus is None:
        errors.append("top products: no per-product read model is configured")
        return []
    try:
        return list(skus.top(shop, p.start, p.end, by=by, limit=TOP_N))
    except Exception as exc:
        errors.append(f"top products by {by}: {error_text(exc)}")
        return []


def read_sales(metrics: MetricStore, skus: SkuSalesPort | None, app: str, shop: str, p: Period,
               currency: str) -> SalesReport:
    errors: list[str] = []
    cur_orders = _orders(metrics, app, shop, p.start, p.end, errors, "orders")
    cur_refunds = _refunds(metrics, app, shop, p.start, p.end, errors, "refunds")
    prev_orders = _orders(metrics, app, shop, p.prev_start, p.prev_end, errors, "orders (previous)")
    prev_refunds = _refunds(metrics, app, shop, p.prev_start, p.prev_end, errors, "refunds (previous)")
    hourly = _orders(metrics, app, shop, p.start, p.end, errors, "orders per hour",
                     bucket_s=3600, group_by=())
    deliveries = run_query(metrics, panels.shop_deliveries(p.start, p.end, shop, app), errors, "deliveries")
    current = figures.totals(cur_orders, cur_refunds)
    previous = figures.totals(prev_orders, prev_refunds)
    return SalesReport(
        shop=shop,
        period=p,
        current=current,
        previous=previous,
        kpis=figures.kpis(current, previous),
        by_channel=figures.breakdown(cur_orders, "channel", currency),
        by_tx_type=figures.breakdown(cur_orders, "tx_type", currency),
        top_revenue=figures.top_products(_top(skus, shop, p, "revenue", errors), currency),
        top_units=figures.top_products(_top(skus, shop, p, "units", errors), currency),
        heatmap=figures.heatmap_matrix(hourly),
        queries=8,
        errors=errors,
        fulfilment=figures.fulfilment(deliveries),
        by_fulfilment=figures.fulfilment_by_tx_type(deliveries, currency),
        by_carrier=figures.shipped_by_carrier(deliveries),
    )


def read_today(metrics: MetricStore, app: str, shop: str, now: datetime) -> TodayStrip:
    """Since UTC midnight: 2 metric-store queries (orders, refunds); last 5 minutes from the same rows."""
    errors: list[str] = []
    since = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    end = now + timedelta(seconds=1)
    rows = _orders(metrics, app, shop, since, end, errors, "orders today", bucket_s=60, group_by=())
    refunds = _refunds(metrics, app, shop, since, end, errors, "refunds today")
    recent = (now - timedelta(minutes=5)).replace(second=0, microsecond=0)  # 5 whole minute buckets + now
    last5 = sum(round(r.values.get("placed") or 0) for r in rows if r.time >= recent)
    return TodayStrip(shop, figures.totals(rows, refunds), last5, since, errors)


def known_shops(metrics: MetricStore, app: str, now: datetime, errors: list[str]) -> list[str]:
    """Shops with orders in the last 90 days: 1 metric-store query."""
    q = Query(ORDERS, ("placed",), now - SHOPS_LOOKBACK, now + timedelta(seconds=1), "sum", None,
              {"app": app}, ("shop",))
    rows = run_query(metrics, q, errors, "shops")
    return sorted({str(r.tags["shop"]) for r in rows if r.tags.get("shop")})
