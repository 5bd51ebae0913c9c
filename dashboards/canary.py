"""Canary vs the rest of the fleet: blocked %, error %, p99 and goodput per node. Pure.

Two queries over the canary's window (``queries``): every ``resource_stats`` count summed per
instance, and the p99 of the per-second max RT per instance (an upper bound of the true p99, as on
the Overview). ``compare`` splits the instances into the canary's targets and the rest and says
whether the guard metric of the canary is worse than the rest's by more than the margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from collectors.query import Query, Row
from dashboards.queries import BLOCK_FIELDS, COUNT_FIELDS, RESOURCE_STATS


def queries(start: datetime, end: datetime, app: str | None = None) -> tuple[Query, Query]:
    where = {"app": app} if app else {}
    return (
        Query(RESOURCE_STATS, COUNT_FIELDS, start, end, "sum", None, where, ("instance",)),
        Query(RESOURCE_STATS, ("rt_max_ms",), start, end, "p99", None, where, ("instance",)),
    )


@dataclass(frozen=True)
class GroupStats:
    nodes: int
    calls: float  # offered: passed + blocked
    blocked_pct: float | None
    error_pct: float | None
    p99_ms: float | None
    goodput_per_node: float | None  # successful calls per second per node

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Comparison:
    canary: GroupStats
    rest: GroupStats
    metric: str
    margin: float
    worse_by: float | None  # canary − rest of the guard metric (None: not enough data)
    breached: bool
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "canary": self.canary.to_dict(),
            "rest": self.rest.to_dict(),
            "metric": self.metric,
            "margin": self.margin,
            "worse_by": None if self.worse_by is None else round(self.worse_by, 3),
            "breached": self.breached,
            "verdict": self.verdict,
        }


def _group(sums: Sequence[Row], p99: Mapping[str, float], names: set[str], seconds: float) -> GroupStats:
    rows = [r for r in sums if r.tags.get("instance", "") in names]
    tot: dict[str, float] = {f: sum(float(r.values.get(f) or 0) for r in rows) for f in COUNT_FIELDS}
    blocked = sum(tot[f] for f in BLOCK_FIELDS)
    offered = tot["pass"] + blocked
    done = tot["success"] + tot["error"]
    p99s = [p99[n] for n in names if n in p99]
    nodes = len({r.tags.get("instance", "") for r in rows}) or len(names)
    return GroupStats(
        nodes=nodes,
        calls=offered,
        blocked_pct=100.0 * blocked / offered if offered else None,
        error_pct=100.0 * tot["error"] / done if done else None,
        p99_ms=max(p99s) if p99s else None,
        goodput_per_node=tot["success"] / max(seconds, 1.0) / nodes if nodes else None,
    )


def compare(
    sums: Sequence[Row],
    p99_rows: Sequence[Row],
    targets: Sequence[str],
    seconds: float,
    guard: Mapping[str, Any],
) -> Comparison:
    instances = {r.tags.get("instance", "") for r in sums}
    canary_names = set(targets)
    rest_names = instances - canary_names
    p99 = {
        r.tags.get("instance", ""): float(r.values["rt_max_ms"])
        for r in p99_rows
        if r.values.get("rt_max_ms") is not None
    }
    c = _group(sums, p99, canary_names, seconds)
    r = _group(sums, p99, rest_names, seconds)
    metric, margin, min_calls = str(guard["metric"]), float(guard["margin"]), int(guard.get("min_calls", 0))
    cv, rv = getattr(c, metric), getattr(r, metric)
    if cv is None or c.calls < min_calls:
        return Comparison(
            c,
            r,
            metric,
            margin,
            None,
            False,
            f"not enough canary traffic yet ({c.calls:.0f} calls, need {min_calls})",
        )
    base = rv if rv is not None else 0.0
    worse = cv - base
    breached = worse > margin
    verdict = (
        f"{metric} canary {cv:.2f} vs rest {base:.2f}: worse by {worse:.2f} > margin {margin:g}"
        if breached
        else f"{metric} canary {cv:.2f} vs rest {base:.2f}: within margin {margin:g}"
    )
    return Comparison(c, r, metric, margin, worse, breached, verdict)
