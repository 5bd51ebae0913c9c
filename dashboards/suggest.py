"""Threshold suggestions: a resource's capacity knee from its recorded traffic, and the QPS and
concurrency thresholds it supports. Pure functions of metric-store rows.

Method (say which and why):

1. **Points.** Each recorded (instance, bucket) of ``resource_stats`` is one point: throughput =
   calls admitted per second (``pass``) on that node, response time = the bucket's mean RT
   (``rt_avg_ms``), error share = ``error / (success + error)``. Points are per node because a flow
   rule is per node unless it is a cluster rule. Long ranges are read in coarser buckets (mean per
   second over the bucket; see ``bucket_for``), which smooths peaks: short ranges give sharper knees.
2. **Binning.** Points are binned by throughput (equal widths); each bin keeps its median throughput
   and median RT, so a few slow outliers do not move the fit.
3. **Two-segment piecewise-linear fit** (a "hinge") of RT against throughput over the bins,
   ``rt = a + b·q + c·max(0, q − k)``, weighted by the points per bin, with the knee ``k`` chosen
   by grid search for the least squared error. Why this rather than a Gradient/Vegas-style estimate:
   those need a live RTT signal and adjust online; here we have a recorded, noisy scatter, and the
   hinge names the throughput at which the slope changes whatever the slope after it is (a
   "k × baseline" crossing would move with the steepness of the rise).
4. **Evidence checks.** No suggestion (``None`` with a reason) when: too few seconds with traffic;
   throughput never varied enough to show light and heavy load; the fitted RT at the highest load
   never left its unloaded baseline by ``rise_factor``× (the resource never reached its capacity);
   or RT rises steadily without a distinct change of slope.
5. **Errors.** If the error share climbs ``error_rise`` above its light-load level at a lower
   throughput than the latency knee, that lower throughput is the knee (method ``errors``).
6. **Proposal.** QPS threshold = ``knee × (1 − margin)``; concurrency threshold by Little's law:
   concurrency = throughput × RT, ``knee × RT(knee) × (1 − margin)`` (at least 1). Both per node.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median
from typing import Any

from collectors.query import Query, Row

MAX_RANGE_S = 7 * 86400
MAX_BUCKETS = 20_000  # per instance: a 7-day range is read in 31 s buckets
FIELDS: tuple[str, ...] = ("pass", "success", "error", "rt_avg_ms", "concurrency")


@dataclass(frozen=True)
class LoadPoint:
    second: int  # bucket start, epoch seconds
    instance: str
    qps: float
    rt_ms: float
    error_share: float
    concurrency: float | None = None


@dataclass(frozen=True)
class Bin:
    qps: float  # median throughput of the bin
    rt_ms: float  # median RT
    error_share: float
    count: int


@dataclass(frozen=True)
class Evidence:
    points: tuple[LoadPoint, ...]
    bins: tuple[Bin, ...]
    baseline_rt_ms: float | None
    knee_qps: float | None = None
    knee_rt_ms: float | None = None
    method: str = ""
    fit: dict[str, float] = field(default_factory=dict)

    def to_dict(self, max_points: int = 500) -> dict[str, Any]:
        step = max(1, math.ceil(len(self.points) / max_points)) if self.points else 1
        return {
            "points": [
                {
                    "qps": round(p.qps, 3),
                    "rt_ms": round(p.rt_ms, 3),
                    "error_share": round(p.error_share, 4),
                    "instance": p.instance,
                    "second": p.second,
                }
                for p in self.points[::step]
            ],
            "points_total": len(self.points),
            "bins": [
                {
                    "qps": round(b.qps, 3),
                    "rt_ms": round(b.rt_ms, 3),
                    "error_share": round(b.error_share, 4),
                    "count": b.count,
                }
                for b in self.bins
            ],
            "baseline_rt_ms": _r(self.baseline_rt_ms),
            "knee": None
            if self.knee_qps is None
            else {"qps": _r(self.knee_qps), "rt_ms": _r(self.knee_rt_ms)},
            "method": self.method,
            "fit": {k: round(v, 6) for k, v in self.fit.items()},
        }


@dataclass(frozen=True)
class Suggestion:
    qps: int  # per-node flow threshold, grade qps
    concurrency: int  # per-node flow threshold, grade concurrency
    knee_qps: float
    knee_rt_ms: float
    margin: float
    method: str  # "latency" or "errors"

    def to_dict(self) -> dict[str, Any]:
        return {
            "qps": {"threshold": self.qps, "grade": "qps", "per": "node"},
            "concurrency": {"threshold": self.concurrency, "grade": "concurrency", "per": "node"},
            "knee_qps": round(self.knee_qps, 3),
            "knee_rt_ms": round(self.knee_rt_ms, 3),
            "margin": self.margin,
            "method": self.method,
        }

    def rule(self, resource: str, grade: str = "qps") -> dict[str, Any]:
        """A flow rule (guardians document entry) for the proposal."""
        threshold = self.qps if grade == "qps" else self.concurrency
        return {"resource": resource, "grade": grade, "threshold": threshold}


@dataclass(frozen=True)
class SuggestResult:
    resource: str
    suggestion: Suggestion | None
    reason: str
    evidence: Evidence

    def to_dict(self) -> dict[str, Any]:
        s = self.suggestion
        return {
            "resource": self.resource,
            "suggestion": s.to_dict() if s else None,
            "qps": s.to_dict()["qps"] if s else None,
            "concurrency": s.to_dict()["concurrency"] if s else None,
            "reason": self.reason,
            "evidence": self.evidence.to_dict(),
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


# ------------------------------------------------------------------ reading
def bucket_for(range_s: int) -> int:
    """Bucket seconds for a range: 1 s up to ``MAX_BUCKETS`` seconds, coarser beyond (≤ 20,000 buckets)."""
    if not 0 < range_s <= MAX_RANGE_S:
        raise ValueError(f"range must be from 1 s to 7 days ({MAX_RANGE_S} s), got {range_s} s")
    return max(1, math.ceil(range_s / MAX_BUCKETS))


def traffic_query(start: datetime, end: datetime, resource: str, app: str | None = None) -> Query:
    """One query: per instance and bucket, the per-second means of pass/success/error, RT, concurrency."""
    range_s = int((end - start).total_seconds())
    where = {"resource": resource}
    if app:
        where["app"] = app
    return Query("resource_stats", FIELDS, start, end, "mean", bucket_for(range_s), where, ("instance",))


def points_from_rows(rows: Sequence[Row]) -> list[LoadPoint]:
    """Points with traffic and a recorded RT (others carry no latency evidence)."""
    out: list[LoadPoint] = []
    for row in rows:
        v = row.values
        qps = float(v.get("pass") or 0.0)
        rt = v.get("rt_avg_ms")
        if qps <= 0 or rt is None or rt <= 0:
            continue
        ok, err = float(v.get("success") or 0.0), float(v.get("error") or 0.0)
        conc = v.get("concurrency")
        out.append(
            LoadPoint(
                second=int(row.time.timestamp()),
                instance=row.tags.get("instance", ""),
                qps=qps,
                rt_ms=float(rt),
                error_share=err / (ok + err) if ok + err > 0 else 0.0,
                concurrency=float(conc) if conc is not None else None,
            )
        )
    return out


# ------------------------------------------------------------------ analysis
def bin_points(points: Sequence[LoadPoint], n_bins: int, min_count: int = 3) -> list[Bin]:
    if not points:
        return []
    hi = max(p.qps for p in points)
    width = hi / n_bins if hi > 0 else 1.0
    groups: dict[int, list[LoadPoint]] = {}
    for p in points:
        groups.setdefault(min(int(p.qps / width), n_bins - 1), []).append(p)
    bins = []
    for i in sorted(groups):
        g = groups[i]
        if len(g) < min_count:
            continue
        bins.append(
            Bin(
                qps=median(p.qps for p in g),
                rt_ms=median(p.rt_ms for p in g),
                error_share=sum(p.error_share for p in g) / len(g),
                count=len(g),
            )
        )
    return bins


def _solve3(m: list[list[float]], y: list[float]) -> list[float] | None:
    """Gaussian elimination for a 3×3 system (None when singular)."""
    a = [[*row, yy] for row, yy in zip(m, y, strict=True)]
    for c in range(3):
        piv = max(range(c, 3), key=lambda r: abs(a[r][c]))
        if abs(a[piv][c]) < 1e-12:
            return None
        a[c], a[piv] = a[piv], a[c]
        for r in range(3):
            if r != c:
                f = a[r][c] / a[c][c]
                a[r] = [x - f * yv for x, yv in zip(a[r], a[c], strict=True)]
    return [a[i][3] / a[i][i] for i in range(3)]


def hinge_fit(bins: Sequence[Bin], k: float) -> tuple[float, float, float, float] | None:
    """Weighted least squares of ``rt = a + b·q + c·max(0, q − k)``: (a, b, c, sse)."""
    m = [[0.0] * 3 for _ in range(3)]
    y = [0.0] * 3
    for b in bins:
        x = (1.0, b.qps, max(0.0, b.qps - k))
        for i in range(3):
            y[i] += b.count * x[i] * b.rt_ms
            for j in range(3):
                m[i][j] += b.count * x[i] * x[j]
    sol = _solve3(m, y)
    if sol is None:
        return None
    a, s1, s2 = sol
    sse = sum(b.count * (a + s1 * b.qps + s2 * max(0.0, b.qps - k) - b.rt_ms) ** 2 for b in bins)
    return a, s1, s2, sse


def suggest(
    resource: str,
    points: Sequence[LoadPoint],
    *,
    margin: float = 0.2,
    rise_factor: float = 1.5,
    error_rise: float = 0.05,
    min_points: int = 60,
    min_spread: float = 2.0,
) -> SuggestResult:
    """The knee and the proposal, or ``suggestion=None`` with the reason the data cannot support one."""
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    if rise_factor <= 1:
        raise ValueError(f"rise_factor must be > 1, got {rise_factor!r}")
    pts = tuple(sorted(points, key=lambda p: p.qps))
    n_bins = max(8, min(40, len(pts) // 25))
    bins = tuple(bin_points(pts, n_bins))
    light = pts[: max(1, len(pts) // 5)]
    baseline = median(p.rt_ms for p in light) if pts else None
    evidence = Evidence(points=pts, bins=bins, baseline_rt_ms=baseline)

    def none(reason: str, **more: Any) -> SuggestResult:
        return SuggestResult(resource, None, reason, Evidence(pts, bins, baseline, **more))

    if len(pts) < min_points:
        return none(
            f"not enough evidence: {len(pts)} second(s) with traffic and a recorded response time "
            f"(need at least {min_points}); too little load in this range"
        )
    lo_q, hi_q = pts[len(pts) // 20].qps, pts[-1 - len(pts) // 20].qps
    if len(bins) < 5 or hi_q < min_spread * max(lo_q, 1e-9):
        return none(
            f"not enough evidence: throughput stayed between {lo_q:.1f}/s and {hi_q:.1f}/s per node; "
            f"a knee needs both light and heavy load (at least {min_spread:g}× apart)"
        )
    assert baseline is not None
    # grid search of the knee between the 2nd and the second-to-last bin
    k_lo, k_hi = bins[1].qps, bins[-2].qps
    best: tuple[float, float, float, float, float] | None = None
    for i in range(201):
        k = k_lo + (k_hi - k_lo) * i / 200
        fit = hinge_fit(bins, k)
        if fit is not None and (best is None or fit[3] < best[4]):
            best = (k, *fit)
    if best is None:
        return none("not enough evidence: the response times could not be fitted")
    k, a, s1, s2, sse = best
    fit_info = {"a": a, "slope_before": s1, "slope_after": s1 + s2, "sse": sse}
    rt_top = a + s1 * bins[-1].qps + s2 * max(0.0, bins[-1].qps - k)
    knee_rt = a + s1 * k
    if rt_top < rise_factor * baseline:
        return none(
            f"no knee: response time stayed within {rise_factor:g}× of its light-load {baseline:.1f} ms "
            f"up to "
            f"{bins[-1].qps:.1f}/s per node; the resource has not reached its capacity in this range",
            fit=fit_info,
        )
    if s2 <= 0 or (s1 > 0 and s1 + s2 < 3 * s1):
        return none(
            "no knee: response time rises steadily with load without a distinct change of slope",
            fit=fit_info,
        )
    method = "latency"
    base_err = sum(p.error_share for p in light) / len(light)
    for b in bins:
        if b.qps < k and b.error_share > base_err + error_rise:
            k, knee_rt, method = b.qps, max(b.rt_ms, baseline), "errors"
            break
    qps = max(1, math.floor(k * (1 - margin)))
    concurrency = max(1, math.ceil(k * (1 - margin) * max(knee_rt, baseline) / 1000.0))
    suggestion = Suggestion(qps, concurrency, k, knee_rt, margin, method)
    reason = (
        f"knee at {k:.1f}/s per node "
        f"({'error share rises' if method == 'errors' else 'response time departs'}"
        f" from {baseline:.1f} ms at light load); proposing {qps}/s and {concurrency} concurrent calls "
        f"({margin:.0%} below the knee)"
    )
    return SuggestResult(
        resource,
        suggestion,
        reason,
        Evidence(evidence.points, bins, baseline, k, knee_rt, method, fit_info),
    )


def suggest_from_rows(resource: str, rows: Sequence[Row], **kw: Any) -> SuggestResult:
    return suggest(resource, points_from_rows(rows), **kw)
