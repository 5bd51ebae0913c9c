"""The Overview page: order flow, payment success, response times, blocks, GMV, open breakers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from collectors.points import BREAKER_STATE_NAMES, BREAKER_STATES
from collectors.query import MetricStore, Query, Row
from console.services.common import run_query
from dashboards import queries as q
from dashboards.frames import frame, has_any, per_second, ratio_percent
from dashboards.ranges import Window, window

log = logging.getLogger(__name__)

_SHOWN_BREAKER_STATES = (BREAKER_STATES["open"], BREAKER_STATES["half_open"])


@dataclass(frozen=True)
class BreakerView:
    resource: str
    instance: str
    state: str
    since: datetime


@dataclass(frozen=True)
class OverviewData:
    window: Window
    orders: pd.DataFrame  # placed, paid — per second
    payment_success: pd.Series  # % per bucket, NaN without charges
    rt: pd.DataFrame  # p50, p99 — ms of order.place
    blocked: pd.DataFrame  # flow, param, system, breaker — per second
    gmv: pd.Series  # currency units per minute
    breakers_open: list[BreakerView]
    kpis: dict[str, float | None]
    has_data: bool
    queries: int
    errors: list[str] = field(default_factory=list)


def _percentile(
    metrics: MetricStore, app: str, w: Window, pct: str, errors: list[str]
) -> tuple[list[Row], str, int]:
    """RT percentile rows; a store without percentiles falls back to mean / max (2 queries then)."""
    query = q.order_place_rt(w, app, percentile=pct)
    try:
        return metrics.query(query), query.fields[0], 1
    except Exception as exc:
        log.info("percentile %s unavailable (%s); falling back", pct, exc)
    fallback = Query(
        query.measurement,
        query.fields,
        query.start,
        query.end,
        "mean" if pct == "p50" else "max",
        query.bucket_s,
        query.where,
    )
    return run_query(metrics, fallback, errors, f"RT {pct}"), query.fields[0], 2


def read_overview(metrics: MetricStore, app: str, range_key: str, now: datetime) -> OverviewData:
    """The Overview page's data: 7 metric-store queries (9 if the store has no percentiles)."""
    w = window(range_key, now)
    errors: list[str] = []
    n = 0

    orders_rows = run_query(metrics, q.orders_rate(w, app), errors, "orders")
    n += 1
    orders = per_second(frame(orders_rows, ["placed", "paid"], w), w)

    pay_rows = run_query(metrics, q.payment_outcomes(w, app), errors, "payments")
    n += 1
    pay = frame(pay_rows, ["success", "failure"], w)
    success_pct = ratio_percent(pay["success"], pay["success"] + pay["failure"])

    rt = pd.DataFrame(index=pd.DatetimeIndex(w.buckets(), name="time"))
    for pct in ("p50", "p99"):
        rows, fld, used = _percentile(metrics, app, w, pct, errors)
        n += used
        rt[pct] = frame(rows, [fld], w, fill=None)[fld]

    blocked_query = q.blocked_by_reason(w, app)
    blocked_query = Query(
        blocked_query.measurement,
        ("pass", *blocked_query.fields),
        blocked_query.start,
        blocked_query.end,
        "sum",
        blocked_query.bucket_s,
        blocked_query.where,
    )
    blocked_rows = run_query(metrics, blocked_query, errors, "blocked")
    n += 1
    calls = frame(blocked_rows, list(blocked_query.fields), w)
    blocked = per_second(calls[list(q.BLOCK_FIELDS)], w)
    blocked.columns = list(q.REASONS)

    breaker_rows = run_query(metrics, q.breaker_states(w, app), errors, "breakers")
    n += 1
    breakers = [
        BreakerView(
            resource=r.tags.get("resource", "?"),
            instance=r.tags.get("instance", "?"),
            state=BREAKER_STATE_NAMES.get(int(r.values["state"]), "?"),
            since=r.time,
        )
        for r in breaker_rows
        if r.values.get("state") is not None and int(r.values["state"]) in _SHOWN_BREAKER_STATES
    ]
    breakers.sort(key=lambda b: (b.state != "open", b.resource, b.instance))

    gmv_query = q.gmv_per_minute(w, app)
    gmv_rows = run_query(metrics, gmv_query, errors, "GMV")
    n += 1
    gw = Window(gmv_query.start, gmv_query.end, int(gmv_query.bucket_s or 60))
    gmv = frame(gmv_rows, ["gmv"], gw)["gmv"] * (60.0 / gw.bucket_s)

    placed = float((orders["placed"] * w.bucket_s).sum())
    paid = float((orders["paid"] * w.bucket_s).sum())
    charges = float(pay["success"].sum() + pay["failure"].sum())
    total_blocked = float(calls[list(q.BLOCK_FIELDS)].to_numpy().sum())
    total_calls = float(calls["pass"].sum()) + total_blocked
    recent = max(1, -(-10 // w.bucket_s))  # buckets covering the last >= 10 s
    last = w.buckets()[-recent:]
    kpis: dict[str, float | None] = {
        "placed": placed,
        "paid": paid,
        "placed_per_s_now": float(orders.loc[orders.index.isin(last), "placed"].mean()) if last else 0.0,
        "now_span_s": float(recent * w.bucket_s),
        "payment_success_pct": 100.0 * float(pay["success"].sum()) / charges if charges else None,
        "blocked": total_blocked,
        "blocked_share_pct": 100.0 * total_blocked / total_calls if total_calls else None,
        "rt_p99_ms": float(rt["p99"].max()) if rt["p99"].notna().any() else None,
        "gmv": float(frame(gmv_rows, ["gmv"], gw)["gmv"].sum()),
        "breakers_open": float(sum(1 for b in breakers if b.state == "open")),
    }
    has_data = any(has_any(df) for df in (orders, pay, calls)) or bool(breakers) or bool(gmv_rows)
    return OverviewData(
        window=w,
        orders=orders,
        payment_success=success_pct,
        rt=rt,
        blocked=blocked,
        gmv=gmv,
        breakers_open=breakers,
        kpis=kpis,
        has_data=has_data,
        queries=n,
        errors=errors,
    )
