"""The Resources page: every guarded resource's totals, one resource's charts and its rules."""

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
from dashboards.frames import frame, has_any, per_second
from dashboards.ranges import Window, window


@dataclass(frozen=True)
class ResourceRow:
    resource: str
    passed: int
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


@dataclass(frozen=True)
class ResourcesData:
    window: Window
    rows: list[ResourceRow]
    queries: int
    errors: list[str] = field(default_factory=list)


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


def _num(v: float | None) -> float:
    return float(v) if v is not None else 0.0


def read_resources(metrics: MetricStore, app: str, range_key: str, now: datetime) -> ResourcesData:
    """Every resource's totals over the range: 2 metric-store queries."""
    w = window(range_key, now)
    errors: list[str] = []
    totals = run_query(metrics, q.resource_totals(w, app), errors, "resource totals")
    rts = run_query(metrics, q.resource_rt(w, app), errors, "resource RT")
    rt_by = {r.tags.get("resource", ""): r.values.get("rt_avg_ms") for r in rts}
    acc: dict[str, dict[str, float]] = {}
    for r in totals:
        slot = acc.setdefault(r.tags.get("resource", ""), {})
        for f in q.COUNT_FIELDS:
            slot[f] = slot.get(f, 0.0) + _num(r.values.get(f))
    rows = []
    for name, v in acc.items():
        blocked = sum(v.get(f, 0.0) for f in q.BLOCK_FIELDS)
        offered = v.get("pass", 0.0) + blocked
        done = v.get("success", 0.0) + v.get("error", 0.0)
        rt = rt_by.get(name)
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
                pass_qps=v.get("pass", 0.0) / w.seconds,
                block_share_pct=100.0 * blocked / offered if offered else None,
                error_share_pct=100.0 * v.get("error", 0.0) / done if done else None,
                rt_avg_ms=float(rt) if rt is not None else None,
            )
        )
    rows.sort(key=lambda r: (-r.blocked, -(r.passed + r.blocked), r.resource))  # blocked first
    return ResourcesData(window=w, rows=rows, queries=2, errors=errors)


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
    """One resource's charts and the rules of ``in_force`` naming it: 2 metric-store queries."""
    w = window(range_key, now)
    rows = run_query(metrics, q.resource_series(w, resource, app), errors, "resource series")
    rt_rows = run_query(metrics, q.resource_rt_series(w, resource, app), errors, "resource RT")
    rates = per_second(frame(rows, list(q.COUNT_FIELDS), w), w)
    return ResourceDetail(
        resource=resource,
        window=w,
        rates=rates,
        rt_ms=frame(rt_rows, ["rt_avg_ms"], w, fill=None)["rt_avg_ms"],
        rules=rules_of(in_force.document, resource) if in_force else {},
        rule_version=in_force.version if in_force else None,
        has_data=has_any(rates),
        queries=3,  # with the caller's rule-store read
        errors=errors,
    )
