"""Query builders: one function per console panel, each returning ``collectors.query.Query`` objects.

Pure: they only describe what to read (measurement, fields, window, aggregate,
tag filters) against the schema the collectors write (see the README):

- ``resource_stats`` tags app, instance, resource; fields pass, block_flow, block_breaker,
  block_system, block_param, success, error, rt_avg_ms, rt_max_ms, concurrency (one point
  per resource per instance per second);
- ``breaker_events`` tags app, instance, resource; fields state, previous;
- ``orders`` tags app, shop, channel, tx_type; fields placed, paid, cancelled, gmv (cents), …;
- ``payments`` tags app, instance; fields success, failure, latency_ms;
- ``deliveries`` tags app, shop, tx_type, carrier; fields shipped, delivered, received, auto_received,
  failed, cod_collected, cod_amount (currency units);
- ``refusals`` tags app, instance, resource, reason; field count (requests the shop refused).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from collectors.query import Query
from dashboards.ranges import Window

RESOURCE_STATS = "resource_stats"
BREAKER_EVENTS = "breaker_events"
ORDERS = "orders"
PAYMENTS = "payments"
REFUSALS = "refusals"
DELIVERIES = "deliveries"
# the fulfilment steps shown on the Overview and the Sales page, in the order a sub-order takes them
DELIVERY_STEPS: tuple[str, ...] = ("shipped", "delivered", "received")
DELIVERY_FIELDS: tuple[str, ...] = (*DELIVERY_STEPS, "auto_received", "failed", "cod_collected", "cod_amount")

ORDER_PLACE = "order.place"

# Block reasons, in the order they are stacked and the field each is counted in.
REASONS: tuple[str, ...] = ("flow", "param", "system", "breaker")
REASON_FIELDS: dict[str, str] = {reason: f"block_{reason}" for reason in REASONS}
BLOCK_FIELDS: tuple[str, ...] = tuple(REASON_FIELDS[r] for r in REASONS)
COUNT_FIELDS: tuple[str, ...] = ("pass", *BLOCK_FIELDS, "success", "error")

# How far back the breaker panel looks for each breaker's last state change.
BREAKER_LOOKBACK = timedelta(hours=24)


def _where(app: str | None, **tags: str) -> dict[str, str]:
    where = {k: v for k, v in tags.items() if v}
    if app:
        where["app"] = app
    return where


def orders_rate(w: Window, app: str | None = None) -> Query:
    """Orders placed and paid per bucket (divide by ``bucket_s`` for a per-second rate)."""
    return Query(ORDERS, ("placed", "paid"), w.start, w.end, "sum", w.bucket_s, _where(app))


def payment_outcomes(w: Window, app: str | None = None) -> Query:
    """Successful and failed charges per bucket: success rate = success / (success + failure)."""
    return Query(PAYMENTS, ("success", "failure"), w.start, w.end, "sum", w.bucket_s, _where(app))


def order_place_rt(
    w: Window, app: str | None = None, *, percentile: str = "p99", resource: str = ORDER_PLACE
) -> Query:
    """A percentile over a bucket's per-second RT samples of one resource.

    The guardians report each second's mean and max RT, not the raw latencies, so
    p50 is taken over the per-second means (``rt_avg_ms``) and p99 over the
    per-second maxima (``rt_max_ms``, an upper bound of the true p99).
    """
    field = "rt_avg_ms" if percentile == "p50" else "rt_max_ms"
    return Query(
        RESOURCE_STATS,
        (field,),
        w.start,
        w.end,
        percentile,  # type: ignore[arg-type]
        w.bucket_s,
        _where(app, resource=resource),
    )


def blocked_by_reason(w: Window, app: str | None = None, *, resource: str | None = None) -> Query:
    """Blocked calls per bucket per reason, all resources (or one) and all instances together."""
    return Query(
        RESOURCE_STATS, BLOCK_FIELDS, w.start, w.end, "sum", w.bucket_s, _where(app, resource=resource or "")
    )


def breaker_states(w: Window, app: str | None = None) -> Query:
    """The last recorded state of every breaker (per resource and instance) in the lookback."""
    start = min(w.start, w.end - BREAKER_LOOKBACK)
    return Query(
        BREAKER_EVENTS, ("state",), start, w.end, "last", None, _where(app), ("resource", "instance")
    )


def gmv_per_minute(w: Window, app: str | None = None) -> Query:
    """GMV (cents) per minute-or-wider bucket."""
    m = w.coarser(60)
    return Query(ORDERS, ("gmv",), m.start, m.end, "sum", m.bucket_s, _where(app))


def deliveries_per_minute(w: Window, app: str | None = None) -> Query:
    """Sub-orders shipped, delivered and received per minute-or-wider bucket (all shops)."""
    m = w.coarser(60)
    return Query(DELIVERIES, DELIVERY_STEPS, m.start, m.end, "sum", m.bucket_s, _where(app))


def shop_deliveries(start: datetime, end: datetime, shop: str, app: str | None = None) -> Query:
    """One shop's delivery figures over ``[start, end)``, per transaction type and carrier."""
    return Query(DELIVERIES, DELIVERY_FIELDS, start, end, "sum", None, _where(app, shop=shop),
                 ("tx_type", "carrier"))


def resource_buckets(w: Window, app: str | None = None) -> Query:
    """Pass, blocked (per reason), success and error per resource per bucket: summed they are the
    totals, and a resource's first bucket says how many seconds of the window its data covers."""
    return Query(RESOURCE_STATS, COUNT_FIELDS, w.start, w.end, "sum", w.bucket_s, _where(app), ("resource",))


def orders_total(w: Window, app: str | None = None) -> Query:
    """Orders placed over the whole window (the business figure)."""
    return Query(ORDERS, ("placed",), w.start, w.end, "sum", None, _where(app))


def refusals_rate(w: Window, app: str | None = None, *, resource: str | None = ORDER_PLACE) -> Query:
    """Requests the shop refused per bucket and reason (all instances), of one resource (or all)."""
    return Query(
        REFUSALS, ("count",), w.start, w.end, "sum", w.bucket_s, _where(app, resource=resource or ""),
        ("reason",),
    )


def refusals_total(w: Window, app: str | None = None) -> Query:
    """Requests the shop refused over the whole window, per resource and reason (all instances)."""
    return Query(REFUSALS, ("count",), w.start, w.end, "sum", None, _where(app), ("resource", "reason"))


def resource_rt(w: Window, app: str | None = None) -> Query:
    """Mean of the per-second mean RT and the max RT per resource over the whole window."""
    return Query(RESOURCE_STATS, ("rt_avg_ms",), w.start, w.end, "mean", None, _where(app), ("resource",))


def resource_series(w: Window, resource: str, app: str | None = None) -> Query:
    """One resource's pass / blocked / error counts per bucket (all instances)."""
    return Query(
        RESOURCE_STATS, COUNT_FIELDS, w.start, w.end, "sum", w.bucket_s, _where(app, resource=resource)
    )


def resource_rt_series(w: Window, resource: str, app: str | None = None) -> Query:
    """One resource's mean RT per bucket (mean of the per-second means)."""
    return Query(
        RESOURCE_STATS, ("rt_avg_ms",), w.start, w.end, "mean", w.bucket_s, _where(app, resource=resource)
    )


def resource_traffic(w: Window, resource: str, app: str | None = None) -> Query:
    """One resource's recorded per-second traffic, per instance, for the impact preview.

    Bucket 1 s grouped by instance holds one point per bucket, so ``max`` reads
    it back as written (and stays right if a replayed point was stored twice).
    """
    fields = ("pass", *BLOCK_FIELDS, "rt_avg_ms")
    return Query(
        RESOURCE_STATS, fields, w.start, w.end, "max", 1, _where(app, resource=resource), ("instance",)
    )
