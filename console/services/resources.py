"""The Resources page: every guarded resource's totals, one resource's charts and its rules.

"passed" is what the guard let through, not what the business did: a refused order (out of stock,
purchase limit, …) is a passed and completed ``order.place`` call. The node records each refusal
(the ``refusals`` measurement, per resource and reason), shown as "refused by the shop" per resource
and, for ``order.place``, per reason next to the orders placed (``orders.placed``: per shop sub-order).

Rates divide by the seconds a resource's data covers in the window (from its first recorded bucket
to the read time), not by the whole range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from collectors.query import MetricStore
from console.services.common import RULE_TYPES, run_query
from console.services.rules import RuleVersionView
from dashboards import queries as q
from dashboards.frames import frame, frame_by, has_any, per_second
from dashboards.ranges import Window, window


@dataclass(frozen=True)
class ResourceRow:
    resource: str
    passed: int  # calls the guard passed
    blocked: int
    block_flow: int
    block_param: int
    block_system: int
    block_breaker: int
    success: int
    error: int
    pass_qps: float
    block_share_pct: float | None
    error_share_pct: float | None
    rt_avg_ms: float | None
    covered_s: float = 0.0  # seconds the rates divide by
    refused: int = 0  # requests of this resource the shop refused (the refusals measurement)


@dataclass(frozen=True)
class ResourcesData:
    window: Window
    rows: list[ResourceRow]
    queries: int
    errors: list[str] = field(default_factory=list)
    orders_placed: int = 0  # business figure over the window (orders.placed: per shop sub-order)
    refused_by_reason: dict[str, int] = field(default_factory=dict)  # order.place: reason -> refusals

    @property
    def as_of(self) -> datetime:
        """The instant the figures reach (the read time)."""
        return self.window.until


@dataclass(frozen=True)
class ResourceDetail:
    resource: str
    window: Window
    rates: pd.DataFrame  # pass, block_*, success, error — per second
    rt_ms: pd.Series
    rules: dict[str, list[dict[str, Any]]]  # rule type -> rules in force for this resource
    rule_version: int | None
    has_data: bool
    queries: int
    errors: list[str] = field(default_factory=list)
    refused: pd.DataFrame | None = None  # refused by the shop per second, one column per reason


def _num(v: float | None) -> float:
    return float(v) if v is not None else 0.0


def read_resources(metrics: MetricStore, app: str, range_key: str, now: datetime) -> ResourcesData:
    """Every resource's totals over the range: 4 metric-store queries (calls per resource and
    bucket, mean RT per resource, orders placed, refusals per resource and reason)."""
    w = window(range_key, now)
    errors: list[str] = []
    series = run_query(metrics, q.resource_buckets(w, app), errors, "resource totals")
    rts = run_query(metrics, q.resource_rt(w, app), errors, "resource RT")
    orders = run_query(metrics, q.orders_total(w, app), errors, "orders placed")
    refusals = run_query(metrics, q.refusals_total(w, app), errors, "refusals")
    placed = sum(_num(r.values.get("placed")) for r in orders)
    refused_by: dict[str, dict[str, float]] = {}
    for r in refusals:
        slot = refused_by.setdefault(r.tags.get("resource", ""), {})
        reason = r.tags.get("reason", "")
        slot[reason] = slot.get(reason, 0.0) + _num(r.values.get("count"))
    rt_by = {r.tags.get("resource", ""): r.values.get("rt_avg_ms") for r in rts}
    acc: dict[str, dict[str, float]] = {}
    first: dict[str, datetime] = {}
    for r in series:
        name = r.tags.get("resource", "")
        slot = acc.setdefault(name, {})
        for f in q.COUNT_FIELDS:
            slot[f] = slot.get(f, 0.0) + _num(r.values.get(f))
        if name not in first or r.time < first[name]:
            first[name] = r.time
    until = w.until
    rows = []
    for name, v in acc.items():
        blocked = sum(v.get(f, 0.0) for f in q.BLOCK_FIELDS)
        offered = v.get("pass", 0.0) + blocked
        done = v.get("success", 0.0) + v.get("error", 0.0)
        rt = rt_by.get(name)
        covered = min(w.covered_s, max(1.0, (until - max(first[name], w.start)).total_seconds()))
        rows.append(
            ResourceRow(
                resource=name,
                passed=int(v.get("pass", 0)),
                blocked=int(blocked),
                block_flow=int(v.get("block_flow", 0)),
                block_param=int(v.get("block_param", 0)),
                block_system=int(v.get("block_system", 0)),
                block_breaker=int(v.get("block_breaker", 0)),
                success=int(v.get("success", 0)),
                error=int(v.get("error", 0)),
                pass_qps=v.get("pass", 0.0) / covered,
                block_share_pct=100.0 * blocked / offered if offered else None,
                error_share_pct=100.0 * v.get("error", 0.0) / done if done else None,
                rt_avg_ms=float(rt) if rt is not None else None,
                covered_s=covered,
                refused=int(sum(refused_by.get(name, {}).values())),
            )
        )
    # blocked or failing first (a payment fault puts payment.charge on top), then the busiest
    rows.sort(key=lambda r: (-(r.blocked + r.error), -(r.passed + r.blocked), r.resource))
    place_reasons = refused_by.get(q.ORDER_PLACE, {})
    return ResourcesData(
        window=w,
        rows=rows,
        queries=4,
        errors=errors,
        orders_placed=int(placed),
        refused_by_reason={k: int(v) for k, v in sorted(place_reasons.items(), key=lambda kv: -kv[1])},
    )


def rules_of(document: Mapping[str, Any], resource: str) -> dict[str, list[dict[str, Any]]]:
    """Rule type -> the rules of ``document`` that name ``resource`` (types without one left out)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in RULE_TYPES:
        mine = [dict(r) for r in document.get(kind) or [] if r.get("resource") == resource]
        if mine:
            out[kind] = mine
    return out


def read_resource_detail(
    metrics: MetricStore,
    app: str,
    resource: str,
    range_key: str,
    now: datetime,
    in_force: RuleVersionView | None,
    errors: list[str],
) -> ResourceDetail:
    """One resource's charts and the rules of ``in_force`` naming it: 3 metric-store queries
    (calls, RT, the shop's refusals per reason)."""
    w = window(range_key, now)
    rows = run_query(metrics, q.resource_series(w, resource, app), errors, "resource series")
    rt_rows = run_query(metrics, q.resource_rt_series(w, resource, app), errors, "resource RT")
    counts = frame(rows, list(q.COUNT_FIELDS), w)
    rates = per_second(counts, w)
    refusal_rows = run_query(metrics, q.refusals_rate(w, app, resource=resource), errors, "refusals")
    refused = per_second(frame_by(refusal_rows, "count", "reason", w), w) if refusal_rows else None
    n = 4  # with the caller's rule-store read
    return ResourceDetail(
        resource=resource,
        window=w,
        rates=rates,
        rt_ms=frame(rt_rows, ["rt_avg_ms"], w, fill=None)["rt_avg_ms"],
        rules=rules_of(in_force.document, resource) if in_force else {},
        rule_version=in_force.version if in_force else None,
        has_data=has_any(rates),
        queries=n,
        errors=errors,
        refused=refused,
    )
