"""Back-test alert rules over recorded metrics: when would they have gone pending, fired, resolved?

The replay drives the real state machine (``alerts.state.AlertStates``) on the evaluator's own
step times (every ``interval_s`` seconds, aligned like a worker's cycles) and computes each step's
values the way the evaluator does (``alerts.evaluator.plan`` shapes, ``rule_series``, ``compare``).
It is fast because it does not query the store once per step:

- rules are grouped by query shape exactly as the evaluator batches them (``plan``);
- **windowed** shapes (aggregate ``sum``, ``count``, ``max``, ``min``, ``last``, ``mean``; an integer
  window): each needed aggregate is read ONCE for the whole range, bucketed at
  ``g = gcd(interval, window)``; the window ``[t - window, t)`` of every step is then exactly
  ``window / g`` whole buckets, combined in memory (``mean`` = Σ sum / Σ count);
- **bounded** shapes (percentiles, which do not compose): the window's min and max are read once
  the same way; a step where no series can hold (``max ≤ threshold`` for ``>`` …) is skipped, and
  only the steps that may hold — or while an alert is open — are evaluated exactly, with the
  evaluator's own query for that instant;
- **per-step** shapes (``function: delta``, fractional windows): the evaluator's query at each step.

A step where nothing holds and no alert of the rule is open changes nothing in the state machine
(``AlertStates.apply`` returns no transition), so such steps are skipped without changing the result.
Heartbeat rules have no recorded metric and are reported as not back-testable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from alerts.evaluator import plan, rule_series
from alerts.model import FIRING, PENDING, AlertRule, compare
from alerts.state import AlertStates, Series
from collectors.query import MetricStore, Query, Row

WINDOWED = ("sum", "count", "max", "min", "last", "mean")
BOUNDED = ("p50", "p90", "p95", "p99")


@dataclass(frozen=True)
class BacktestEvent:
    at: datetime
    kind: str  # pending | firing | resolved | cleared
    labels: Mapping[str, str]
    value: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "labels": dict(self.labels),
            "value": self.value,
        }


@dataclass
class RuleBacktest:
    rule: str
    op: str
    threshold: float
    mode: str  # windowed | bounded | per-step | unsupported
    events: list[BacktestEvent] = field(default_factory=list)
    series: dict[str, list[tuple[datetime, float | None]]] = field(default_factory=dict)
    series_kind: str = "window"  # window: the rule's value at each step | bucket: per-interval aggregate
    evaluated_steps: int = 0
    error: str | None = None

    def intervals(self, end: datetime) -> list[dict[str, Any]]:
        """Pending and firing spans per alert (label set): ``{labels, state, start, end, open}``."""
        out: list[dict[str, Any]] = []
        started: dict[str, tuple[str, datetime, Mapping[str, str]]] = {}
        for e in self.events:
            key = _key(e.labels)
            if e.kind in (PENDING, FIRING):
                prev = started.pop(key, None)
                if prev is not None:
                    out.append(_span(prev, e.at, False))
                started[key] = (e.kind, e.at, e.labels)
            elif e.kind in ("resolved", "cleared"):
                prev = started.pop(key, None)
                if prev is not None:
                    out.append(_span(prev, e.at, False))
        for prev in started.values():
            out.append(_span(prev, end, True))
        return sorted(out, key=lambda s: s["start"])

    def to_dict(self, end: datetime) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "op": self.op,
            "threshold": self.threshold,
            "mode": self.mode,
            "error": self.error,
            "evaluated_steps": self.evaluated_steps,
            "events": [e.to_dict() for e in self.events],
            "intervals": [
                {**s, "start": s["start"].isoformat(), "end": s["end"].isoformat()}
                for s in self.intervals(end)
            ],
            "series_kind": self.series_kind,
            "series": {
                k: [{"time": t.isoformat(), "value": v} for t, v in pts] for k, pts in self.series.items()
            },
            "counts": {
                k: sum(1 for e in self.events if e.kind == k)
                for k in ("pending", "firing", "resolved", "cleared")
            },
        }


def _span(prev: tuple[str, datetime, Mapping[str, str]], end: datetime, still_open: bool) -> dict[str, Any]:
    state, start, labels = prev
    return {"labels": dict(labels), "state": state, "start": start, "end": end, "open": still_open}


def _key(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))


@dataclass
class BacktestResult:
    start: datetime
    end: datetime
    interval_s: int
    steps: int
    rules: dict[str, RuleBacktest]
    queries: int = 0
    duration_s: float = 0.0


def step_times(start: datetime, end: datetime, interval_s: int) -> list[datetime]:
    """The evaluation instants in ``(start, end]`` … aligned to multiples of ``interval_s`` (epoch)."""
    first = math.ceil(start.timestamp() / interval_s) * interval_s
    last = end.timestamp()
    out = []
    t = first
    while t <= last + 1e-9:
        out.append(datetime.fromtimestamp(t, UTC))
        t += interval_s
    return out


class _Counter:
    def __init__(self, metrics: MetricStore) -> None:
        self.metrics = metrics
        self.n = 0

    def query(self, q: Query) -> list[Row]:
        self.n += 1
        return self.metrics.query(q)


def backtest(
    rules: Sequence[AlertRule],
    metrics: MetricStore,
    start: datetime,
    end: datetime,
    *,
    interval_s: int = 10,
    with_series: bool = False,
) -> BacktestResult:
    """Replay ``[start, end]`` of ``metrics`` through ``rules`` (see the module)."""
    if int(interval_s) != interval_s or interval_s < 1:
        raise ValueError(f"interval_s: must be a whole number of seconds ≥ 1, got {interval_s!r}")
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    interval_s = int(interval_s)
    began = time.perf_counter()
    store = _Counter(metrics)
    times = step_times(start, end, interval_s)
    out: dict[str, RuleBacktest] = {}
    for r in rules:
        if r.kind != "metric" or r.query is None:
            out[r.name] = RuleBacktest(
                r.name, r.op, r.threshold, "unsupported", error="only metric rules can be back-tested"
            )
    metric_rules = [r for r in rules if r.name not in out]
    if times and metric_rules:
        for template, members in plan(metric_rules, times[-1]):
            try:
                _Template(store, template, members, times, interval_s).run(out, with_series)
            except Exception as exc:  # the store failed: these rules report it, the others go on
                for r in members:
                    out[r.name] = RuleBacktest(
                        r.name, r.op, r.threshold, "error", error=f"{type(exc).__name__}: {exc}"
                    )
    return BacktestResult(
        start, end, interval_s, len(times), out, queries=store.n, duration_s=time.perf_counter() - began
    )


class _Template:
    """One query shape of the evaluator over the whole range."""

    def __init__(
        self, store: _Counter, q: Query, members: list[AlertRule], times: list[datetime], interval_s: int
    ) -> None:
        self.store = store
        self.q = q
        self.members = members
        self.times = times
        self.interval = interval_s
        self.window = q.end - q.start
        w = self.window.total_seconds()
        integral = w == int(w) and w >= 1
        self.g = math.gcd(interval_s, int(w)) if integral else 0
        if q.bucket_s is not None or not integral:
            self.mode = "per-step"
        elif q.aggregate in WINDOWED:
            self.mode = "windowed"
        else:
            self.mode = "bounded"
        self._exact: dict[int, list[Row]] = {}
        self.groups: list[tuple[str, ...]] = []

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, aggregate: str) -> dict[str, np.ndarray]:
        """Per field, a (groups × buckets) array of ``aggregate`` per bucket of ``g`` (NaN: none)."""
        base = self.times[0] - self.window
        rows = self.store.query(
            replace(self.q, start=base, end=self.times[-1], aggregate=aggregate, bucket_s=self.g)  # type: ignore[arg-type]
        )
        nb = round((self.times[-1] - base).total_seconds()) // self.g
        index = {gk: i for i, gk in enumerate(self.groups)}
        for r in rows:
            gk = tuple(r.tags.get(k, "") for k in self.q.group_by)
            if gk not in index:
                index[gk] = len(self.groups)
                self.groups.append(gk)
        arrays = {f: np.full((len(self.groups), nb), np.nan) for f in self.q.fields}
        g0 = base.timestamp()
        for r in rows:
            b = round(r.time.timestamp() - g0) // self.g
            if not 0 <= b < nb:
                continue
            gi = index[tuple(r.tags.get(k, "") for k in self.q.group_by)]
            for f, v in r.values.items():
                if v is not None and f in arrays:
                    arrays[f][gi, b] = v
        return arrays

    def _windows(
        self, arr: np.ndarray, combine: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """(groups × steps): ``combine`` folded over the ``window / g`` buckets of each step, in order."""
        m = int(self.window.total_seconds()) // self.g
        stride = self.interval // self.g
        s = len(self.times)
        starts = np.arange(s) * stride
        acc = arr[:, starts]
        for i in range(1, m):
            acc = combine(acc, arr[:, starts + i])
        return acc

    def _pad(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Arrays read before a later read found new groups get NaN rows for them."""
        n = len(self.groups)
        return {
            f: a if a.shape[0] == n else np.vstack([a, np.full((n - a.shape[0], a.shape[1]), np.nan)])
            for f, a in arrays.items()
        }

    # -- evaluating ------------------------------------------------------------------------------
    def run(self, out: dict[str, RuleBacktest], with_series: bool) -> None:
        values: dict[str, np.ndarray] = {}
        lo: dict[str, np.ndarray] = {}
        hi: dict[str, np.ndarray] = {}
        if self.mode == "windowed":
            values = self._window_values()
        elif self.mode == "bounded":
            # only the bound a condition can use is read: max for > and >=, min for < and <=
            ops = {r.op for r in self.members}
            mins = self._read("min") if ops - {">", ">="} else None
            maxs = self._read("max") if ops - {"<", "<="} else None
            for arrays, bound, combine in ((mins, lo, np.fmin), (maxs, hi, np.fmax)):
                if arrays is not None:
                    bound.update({f: self._windows(a, combine) for f, a in self._pad(arrays).items()})
            lo = lo or {f: np.full_like(a, -np.inf) for f, a in hi.items()}
            hi = hi or {f: np.full_like(a, np.inf) for f, a in lo.items()}
            if mins is None:  # presence from the max bound
                lo = {f: np.where(np.isnan(hi[f]), np.nan, lo[f]) for f in lo}
        for rule in self.members:
            res = RuleBacktest(rule.name, rule.op, rule.threshold, self.mode)
            if self.mode == "windowed":
                self._run_windowed(rule, values, res, with_series)
            else:
                self._run_exact(rule, lo, hi, res, with_series)
            out[rule.name] = res

    def _window_values(self) -> dict[str, np.ndarray]:
        agg = self.q.aggregate
        if agg == "mean":
            sums, counts = self._read("sum"), self._read("count")
            sums, counts = self._pad(sums), self._pad(counts)
            out = {}
            for f in self.q.fields:
                s = self._windows(sums[f], _nan_add)
                c = self._windows(counts[f], _nan_add)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[f] = np.where(c > 0, s / c, np.nan)
            return out
        arrays = self._read(agg)
        combine = {"sum": _nan_add, "count": _nan_add, "max": np.fmax, "min": np.fmin, "last": _last}[agg]
        return {f: self._windows(a, combine) for f, a in arrays.items()}

    def _rule_groups(self, rule: AlertRule) -> list[int]:
        q = rule.query
        assert q is not None
        idx = {k: i for i, k in enumerate(self.q.group_by)}
        return [
            gi
            for gi, gk in enumerate(self.groups)
            if all(gk[idx[k]] == v for k, v in q.where.items() if k in idx)
        ]

    def _labels(self, rule: AlertRule, gk: tuple[str, ...]) -> dict[str, str]:
        q = rule.query
        assert q is not None
        tags = dict(zip(self.q.group_by, gk, strict=True))
        return {
            **rule.base_labels(),
            **{k: str(v) for k, v in q.where.items()},
            **{k: tags.get(k, "") for k in q.group_by},
        }

    def _value(self, rule: AlertRule, arrays: Mapping[str, np.ndarray], rows: list[int]) -> np.ndarray:
        q = rule.query
        assert q is not None
        if q.ratio is None:
            return (
                arrays[q.field][rows] if q.field in arrays else np.full((len(rows), len(self.times)), np.nan)
            )

        def total(names: Sequence[str]) -> np.ndarray:
            acc = np.full((len(rows), len(self.times)), np.nan)
            for n in names:
                acc = _nan_add(acc, arrays[n][rows])
            return acc

        num, den = total(q.ratio.numerator), total(q.ratio.denominator)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                np.isnan(num) | np.isnan(den) | (den == 0), np.nan, num / np.where(den == 0, 1, den)
            )

    def _run_windowed(
        self, rule: AlertRule, values: Mapping[str, np.ndarray], res: RuleBacktest, with_series: bool
    ) -> None:
        rows = self._rule_groups(rule)
        v = self._value(rule, values, rows)
        present = ~np.isnan(v)
        cond = present & _compare(rule.op, v, rule.threshold)
        nodata = ~present.any(axis=0) if rows else np.ones(len(self.times), dtype=bool)
        labels = [self._labels(rule, self.groups[gi]) for gi in rows]

        def step(k: int) -> tuple[str, list[Series]]:
            if nodata[k]:
                return "no_data", []
            return "ok", [Series(labels[i], float(v[i, k])) for i in np.flatnonzero(cond[:, k])]

        candidates = cond.any(axis=0) if rows else np.zeros(len(self.times), dtype=bool)
        if rule.no_data == "alerting":
            candidates = candidates | nodata
        self._drive(rule, np.flatnonzero(candidates), step, res)
        if with_series:
            for i, lab in enumerate(labels):
                res.series[_key(lab)] = [
                    (t, None if np.isnan(v[i, k]) else float(v[i, k])) for k, t in enumerate(self.times)
                ]

    def _exact_rows(self, k: int) -> list[Row]:
        rows = self._exact.get(k)
        if rows is None:
            t = self.times[k]
            rows = self.store.query(replace(self.q, start=t - self.window, end=t))
            self._exact[k] = rows  # shared by every rule of the shape
        return rows

    def _run_exact(
        self,
        rule: AlertRule,
        lo: Mapping[str, np.ndarray],
        hi: Mapping[str, np.ndarray],
        res: RuleBacktest,
        with_series: bool,
    ) -> None:
        q = rule.query
        assert q is not None
        s = len(self.times)
        if self.mode == "bounded" and q.ratio is None and q.field in lo:
            rows = self._rule_groups(rule)
            low, high = lo[q.field][rows], hi[q.field][rows]
            present = ~np.isnan(low)
            maybe = present & _maybe(rule.op, low, high, rule.threshold)
            candidates = maybe.any(axis=0) if rows else np.zeros(s, dtype=bool)
            if rule.no_data == "alerting":
                candidates = candidates | ~(present.any(axis=0) if rows else np.zeros(s, dtype=bool))
            cand = np.flatnonzero(candidates)
        else:
            cand = np.arange(s)

        def step(k: int) -> tuple[str, list[Series]]:
            series = rule_series(rule, self._exact_rows(k))
            if not series:
                return "no_data", []
            return "ok", [
                x for x in series if x.value is not None and compare(rule.op, x.value, rule.threshold)
            ]

        self._drive(rule, cand, step, res)
        if with_series:
            self._bucket_series(rule, res)

    def _bucket_series(self, rule: AlertRule, res: RuleBacktest) -> None:
        """For the chart: the rule's aggregate per evaluation interval (one query)."""
        q = rule.query
        assert q is not None
        rows = self.store.query(
            replace(
                self.q,
                start=self.times[0] - self.window,
                end=self.times[-1],
                bucket_s=self.interval,
            )
        )
        plain = replace(rule, query=replace(q, function="value"))
        by_time: dict[datetime, list[Row]] = {}
        for r in rows:
            by_time.setdefault(r.time, []).append(r)
        for t in sorted(by_time):
            for x in rule_series(plain, by_time[t]):
                res.series.setdefault(_key(x.labels), []).append(
                    (t + timedelta(seconds=self.interval), x.value)
                )
        res.series_kind = "bucket"

    def _drive(
        self,
        rule: AlertRule,
        candidates: np.ndarray,
        step: Callable[[int], tuple[str, list[Series]]],
        res: RuleBacktest,
    ) -> None:
        """The real state machine over the steps that can change it: each candidate step, and every
        step while an alert of the rule is open."""
        states = AlertStates()
        s = len(self.times)
        k = -1
        while True:
            if states.open:
                k += 1
            else:
                pos = int(np.searchsorted(candidates, k + 1))
                if pos >= len(candidates):
                    break
                k = int(candidates[pos])
            if k >= s:
                break
            now = self.times[k]
            status, holding = step(k)
            res.evaluated_steps += 1
            if status == "ok":
                transitions = states.apply(rule, holding, now)
            else:
                transitions = states.apply(rule, [], now, policy=rule.no_data, reason=status)
            for t in transitions:
                if t.kind != "updated":
                    res.events.append(BacktestEvent(now, t.kind, dict(t.record.labels), t.record.value))


def _nan_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b where NaN means "no value": NaN only when both are NaN."""
    return np.where(np.isnan(a), b, np.where(np.isnan(b), a, a + b))


def _last(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(b), a, b)


def _compare(op: str, v: np.ndarray, threshold: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if op == ">":
            return v > threshold
        if op == ">=":
            return v >= threshold
        if op == "<":
            return v < threshold
        if op == "<=":
            return v <= threshold
        if op == "==":
            return v == threshold
        if op == "!=":
            return v != threshold
    raise ValueError(f"op must be one of >, >=, <, <=, ==, !=, got {op!r}")


def _maybe(op: str, lo: np.ndarray, hi: np.ndarray, threshold: float) -> np.ndarray:
    """Where a value known only to lie in ``[lo, hi]`` may satisfy the condition."""
    with np.errstate(invalid="ignore"):
        if op in (">", ">="):
            return _compare(op, hi, threshold)
        if op in ("<", "<="):
            return _compare(op, lo, threshold)
        if op == "==":
            return (lo <= threshold) & (hi >= threshold)
        return ~((lo == threshold) & (hi == threshold))
