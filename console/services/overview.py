"""The Overview page: order flow, payment success, response times, blocks, GMV, fulfilment, open breakers.

Headline KPIs are **now**: the last ``NOW_S`` seconds (60 s) up to the read time, from their own
queries; the range's figure (total, share or peak over the chosen range) is the secondary value.
A KPI past its objective (``OBJECTIVES``) is listed in ``OverviewData.breaches``.

Business refusals (out of stock, purchase limit, …) are not a guard outcome: the guardians count a
refused ``order.place`` call as passed and completed, and a refused order leaves no journal event.
The node records each refusal itself (the ``refusals`` measurement: 409/422 answers per resource and
reason, per node and second), shown as its own series per reason next to "calls the guard passed"
and "orders placed". ``orders.placed`` counts per shop sub-order (an order split over two shops
counts two), and is labelled so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from collectors.points import BREAKER_STATE_NAMES, BREAKER_STATES
from collectors.query import MetricStore, Query, Row
from console.services.common import run_query
from dashboards import queries as q
from dashboards.frames import REFUSED_PREFIX, frame, frame_by, has_any, per_second, ratio_percent
from dashboards.ranges import Window, recent, window

log = logging.getLogger(__name__)

_SHOWN_BREAKER_STATES = (BREAKER_STATES["open"], BREAKER_STATES["half_open"])

NOW_S = 60  # the headline KPIs cover the last minute …
NOW_LAG_S = 2  # … of completed seconds up to 2 s ago: a node writes a second's points ~1-2 s after it
# The objectives the KPIs are held to: the default alert rules' thresholds (alerts/default_rules.yaml:
# PaymentSuccessRateLow < 0.95, OrderPlaceLatencyHigh > 500 ms).
OBJECTIVES: dict[str, float] = {"payment_success_pct": 95.0, "rt_p99_ms": 500.0}
# Buckets this wide read mean/max RT: they also answer from the embedded store's 1-minute rollups
# (older than its raw retention), where percentiles are not available.
ROLLUP_SAFE_BUCKET_S = 60
RESOURCE_FIELDS: tuple[str, ...] = ("pass", *q.BLOCK_FIELDS, "success", "error")


@dataclass(frozen=True)
class BreakerView:
    resource: str
    instance: str
    state: str
    since: datetime


@dataclass(frozen=True)
class OverviewData:
    window: Window
    orders: pd.DataFrame  # placed, paid, guard_passed (order.place), refused:<reason> — per second
    payment_success: pd.Series  # % per bucket, NaN without charges
    rt: pd.DataFrame  # p50, p99 — ms of order.place
    blocked: pd.DataFrame  # flow, param, system, breaker — per second
    gmv: pd.Series  # currency units per minute
    deliveries: pd.DataFrame  # shipped, delivered, received — sub-orders per minute
    breakers_open: list[BreakerView]
    kpis: dict[str, float | None]
    has_data: bool
    queries: int
    errors: list[str] = field(default_factory=list)
    rt_labels: dict[str, str] = field(default_factory=dict)  # p50/p99 column -> what it is
    now_window: Window | None = None
    breaches: frozenset[str] = frozenset()  # KPI keys past their objective (OBJECTIVES)
    objectives: dict[str, float] = field(default_factory=lambda: dict(OBJECTIVES))
    refused_by_reason: dict[str, float] = field(default_factory=dict)  # order.place, over the range


def _rt_query(
    metrics: MetricStore, query: Query, pct: str, errors: list[str], label: str
) -> tuple[list[Row], int]:
    """Rows of a percentile RT query; a store without percentiles falls back to mean / max (2 queries)."""
    try:
        return metrics.query(query), 1
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
        query.group_by,
    )
    return run_query(metrics, fallback, errors, label), 2


def _sum(rows: list[Row], name: str) -> float:
    return float(sum(r.values.get(name) or 0.0 for r in rows))


def _covered_s(rows: list[Row], w: Window) -> float:
    """Seconds of the window the rows' data covers: from the first recorded bucket (or the window's
    start) to the window's present end, as the Resources table's rates divide (``resources.py``). A
    node started 1 minute into a 5-minute range has its orders divided by 1 minute, not 5."""
    times = [r.time for r in rows if any(v is not None for v in r.values.values())]
    if not times:
        return w.covered_s
    first = max(min(times), w.start)
    return min(w.covered_s, max(1.0, (w.until - first).total_seconds()))


def _now_span_s(range_rows: list[Row], nw: Window) -> float:
    """Seconds of the now-window ``nw`` the range's order data covers: all of it, unless the first
    recorded bucket (of any range: a coarse bucket starts earlier, so this never undercounts) begins
    inside it."""
    times = [r.time for r in range_rows if any(v is not None for v in r.values.values())]
    if not times or min(times) <= nw.start:
        return float(nw.seconds)
    return max(1.0, (nw.end - min(times)).total_seconds())


def read_overview(
    metrics: MetricStore,
    app: str,
    range_key: str,
    now: datetime,
    *,
    objectives: dict[str, float] | None = None,
) -> OverviewData:
    """The Overview page's data: 13 metric-store queries (16 if the store has no percentiles).

    9 over the range (orders, payments, p50 and p99 RT, calls per resource, refusals, breakers, GMV,
    deliveries) and 4 over the last minute for the headline KPIs (orders, payments, p99 RT, calls)."""
    goals = dict(OBJECTIVES if objectives is None else objectives)
    w = window(range_key, now)
    errors: list[str] = []
    n = 0

    orders_rows = run_query(metrics, q.orders_rate(w, app), errors, "orders")
    n += 1
    order_counts = frame(orders_rows, ["placed", "paid"], w)

    pay_rows = run_query(metrics, q.payment_outcomes(w, app), errors, "payments")
    n += 1
    pay = frame(pay_rows, ["success", "failure"], w)
    success_pct = ratio_percent(pay["success"], pay["success"] + pay["failure"])

    rt = pd.DataFrame(index=pd.DatetimeIndex(w.buckets(), name="time"))
    rollup_safe = w.bucket_s >= ROLLUP_SAFE_BUCKET_S
    rt_labels = (
        {"p50": "mean of per-second means", "p99": "max of per-second maxima"}
        if rollup_safe
        else {"p50": "p50 (of per-second means)", "p99": "p99 (of per-second maxima)"}
    )
    for pct in ("p50", "p99"):
        query = q.order_place_rt(w, app, percentile=pct)
        if rollup_safe:
            query = Query(
                query.measurement,
                query.fields,
                query.start,
                query.end,
                "mean" if pct == "p50" else "max",
                query.bucket_s,
                query.where,
            )
            rows, used = run_query(metrics, query, errors, f"RT {pct}"), 1
        else:
            rows, used = _rt_query(metrics, query, pct, errors, f"RT {pct}")
        n += used
        rt[pct] = frame(rows, [query.fields[0]], w, fill=None)[query.fields[0]]

    calls_query = Query(
        q.RESOURCE_STATS,
        RESOURCE_FIELDS,
        w.start,
        w.end,
        "sum",
        w.bucket_s,
        {"app": app} if app else {},
        ("resource",),
    )
    calls_rows = run_query(metrics, calls_query, errors, "calls")
    n += 1
    calls = frame(calls_rows, list(RESOURCE_FIELDS), w)
    place = frame([r for r in calls_rows if r.tags.get("resource") == q.ORDER_PLACE], ["pass", "success"], w)
    blocked = per_second(calls[list(q.BLOCK_FIELDS)], w)
    blocked.columns = list(q.REASONS)

    refusal_rows = run_query(metrics, q.refusals_rate(w, app, resource=q.ORDER_PLACE), errors, "refusals")
    n += 1
    by_reason = frame_by(refusal_rows, "count", "reason", w)
    counts = order_counts.copy()
    counts["guard_passed"] = place["pass"]
    for reason in by_reason.columns:
        counts[REFUSED_PREFIX + reason] = by_reason[reason]
    orders = per_second(counts, w)
    refused_by_reason = {reason: float(by_reason[reason].sum()) for reason in by_reason.columns}

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

    delivery_query = q.deliveries_per_minute(w, app)
    delivery_rows = run_query(metrics, delivery_query, errors, "deliveries")
    n += 1
    dw = Window(delivery_query.start, delivery_query.end, int(delivery_query.bucket_s or 60))
    delivery_counts = frame(delivery_rows, list(q.DELIVERY_STEPS), dw)
    deliveries = delivery_counts * (60.0 / dw.bucket_s)

    # -- the last minute (headline KPIs) -------------------------------------------------
    nw = recent(now, NOW_S, lag_s=NOW_LAG_S)
    where = {"app": app} if app else {}
    now_orders = run_query(
        metrics, Query(q.ORDERS, ("placed",), nw.start, nw.end, "sum", None, where), errors, "orders now"
    )
    now_pay = run_query(
        metrics,
        Query(q.PAYMENTS, ("success", "failure"), nw.start, nw.end, "sum", None, where),
        errors,
        "payments now",
    )
    p99_now_query = Query(
        q.RESOURCE_STATS, ("rt_max_ms",), nw.start, nw.end, "p99", None, {**where, "resource": q.ORDER_PLACE}
    )
    now_rt, used = _rt_query(metrics, p99_now_query, "p99", errors, "RT p99 now")
    now_calls = run_query(
        metrics,
        Query(q.RESOURCE_STATS, ("pass", *q.BLOCK_FIELDS), nw.start, nw.end, "sum", None, where),
        errors,
        "calls now",
    )
    n += 3 + used

    # the last minute's seconds the orders' data covers: a node that started 20 s ago has its orders
    # divided by 20 s, as the range rate is (``_covered_s``), so "now" and the range agree at start-up
    now_span_s = _now_span_s(orders_rows, nw)
    placed = float(order_counts["placed"].sum())
    paid = float(order_counts["paid"].sum())
    charges = float(pay["success"].sum() + pay["failure"].sum())
    total_blocked = float(calls[list(q.BLOCK_FIELDS)].to_numpy().sum())
    total_calls = float(calls["pass"].sum()) + total_blocked
    charges_now = _sum(now_pay, "success") + _sum(now_pay, "failure")
    blocked_now = sum(_sum(now_calls, f) for f in q.BLOCK_FIELDS)
    calls_now = _sum(now_calls, "pass") + blocked_now
    p99_now = [r.values.get("rt_max_ms") for r in now_rt if r.values.get("rt_max_ms") is not None]
    place_completed = float(place["success"].sum())
    kpis: dict[str, float | None] = {
        "placed": placed,
        "paid": paid,
        "placed_per_s_now": _sum(now_orders, "placed") / now_span_s,
        "now_span_s": now_span_s,
        "now_lag_s": float(NOW_LAG_S),
        "placed_per_s_range": placed / _covered_s(orders_rows, w),
        "range_covered_s": _covered_s(orders_rows, w),
        "payment_success_pct_now": 100.0 * _sum(now_pay, "success") / charges_now if charges_now else None,
        "payment_success_pct": 100.0 * float(pay["success"].sum()) / charges if charges else None,
        "blocked": total_blocked,
        "blocked_share_pct_now": 100.0 * blocked_now / calls_now if calls_now else None,
        "blocked_share_pct": 100.0 * total_blocked / total_calls if total_calls else None,
        "rt_p99_ms_now": float(max(p99_now)) if p99_now else None,
        "rt_p99_ms": float(rt["p99"].max()) if rt["p99"].notna().any() else None,  # the range's peak
        "gmv": float(frame(gmv_rows, ["gmv"], gw)["gmv"].sum()),
        "breakers_open": float(sum(1 for b in breakers if b.state == "open")),
        "guard_passed": float(place["pass"].sum()),
        "completed": place_completed,
        "refused": float(sum(refused_by_reason.values())),
        **{step: float(delivery_counts[step].sum()) for step in q.DELIVERY_STEPS},
    }
    breaches = set()
    pay_now = kpis["payment_success_pct_now"]
    if "payment_success_pct" in goals and pay_now is not None and pay_now < goals["payment_success_pct"]:
        breaches.add("payment_success_pct_now")
    rt_now = kpis["rt_p99_ms_now"]
    if "rt_p99_ms" in goals and rt_now is not None and rt_now > goals["rt_p99_ms"]:
        breaches.add("rt_p99_ms_now")
    has_data = (
        any(has_any(df) for df in (order_counts, pay, calls, by_reason, delivery_counts))
        or bool(breakers)
        or bool(gmv_rows)
        or bool(now_orders or now_pay or now_calls)
    )
    return OverviewData(
        window=w,
        orders=orders,
        payment_success=success_pct,
        rt=rt,
        blocked=blocked,
        gmv=gmv,
        deliveries=deliveries,
        breakers_open=breakers,
        kpis=kpis,
        has_data=has_data,
        queries=n,
        errors=errors,
        rt_labels=rt_labels,
        now_window=nw,
        breaches=frozenset(breaches),
        objectives=goals,
        refused_by_reason=refused_by_reason,
    )
