"""The back-test equals a live evaluation of the same recorded data on a fake clock.

The live side is the real ``Evaluator`` (control DB in SQLite, transitions persisted) stepped every
10 s over a ``FakeMetricStore`` holding per-second data; the back-test reads the same store once per
shape and replays. Every transition (time, kind, labels, value) must match.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from datetime import timedelta

import pytest

from alerts.backtest import backtest, step_times
from alerts.evaluator import Evaluator, plan
from alerts.rulefile import parse_rule
from alerts.store import AlertStore
from tests.unit.alerts.fakes import T0, FakeClock, FakeMetricStore

MINUTES = 40
INTERVAL = 10


def _q(**kw):
    return {"measurement": "resource_stats", "window": "1m", "group_by": ["app", "resource"], **kw}


RULES = [
    # windowed shapes
    {"name": "ErrSum", "query": _q(field="error", aggregate="sum"), "op": ">", "threshold": 30, "for": "30s"},
    {
        "name": "ErrSumKeep",
        "query": _q(field="error", aggregate="sum", where={"resource": "order.pay"}),
        "op": ">",
        "threshold": 10,
        "for": "0s",
        "keep_firing_for": "40s",
    },
    {
        "name": "RtMean",
        "query": _q(field="rt", aggregate="mean"),
        "op": ">=",
        "threshold": 60.5,
        "for": "20s",
    },
    {"name": "RtMax", "query": _q(field="rt", aggregate="max"), "op": ">", "threshold": 95, "for": "0s"},
    {"name": "RtMin", "query": _q(field="rt", aggregate="min"), "op": "<", "threshold": 21, "for": "10s"},
    {"name": "RtLast", "query": _q(field="rt", aggregate="last"), "op": ">", "threshold": 90, "for": "0s"},
    {
        "name": "Count",
        "query": _q(field="error", aggregate="count"),
        "op": "<",
        "threshold": 60,
        "for": "0s",
        "no_data": "alerting",
    },
    {
        "name": "ErrRatio",
        "query": _q(ratio={"numerator": ["error"], "denominator": ["error", "ok"]}, aggregate="sum"),
        "op": ">",
        "threshold": 0.2,
        "for": "1m",
    },
    {
        "name": "PayGone",
        "query": {"measurement": "payments", "field": "success", "aggregate": "sum", "window": "30s"},
        "op": "<",
        "threshold": 1,
        "for": "0s",
        "no_data": "alerting",
    },
    # bounded (percentile) and per-step (delta) shapes
    {"name": "RtP99", "query": _q(field="rt", aggregate="p99"), "op": ">", "threshold": 80, "for": "20s"},
    {"name": "RtP50", "query": _q(field="rt", aggregate="p50"), "op": "<=", "threshold": 25, "for": "0s"},
    {
        "name": "ErrGrowing",
        "query": _q(field="error", aggregate="sum", function="delta", bucket="15s"),
        "op": ">",
        "threshold": 2,
        "for": "0s",
    },
]


class IndexedStore(FakeMetricStore):
    """``FakeMetricStore``'s own query, over only the points in the query's time range (fast)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_time: list | None = None

    def write(self, points) -> None:
        super().write(points)
        self._by_time = None

    def query(self, query):
        if self._by_time is None:
            self._by_time = sorted(self._series.items(), key=lambda kv: kv[1].time)
            self._times = [p.time for _, p in self._by_time]
        lo, hi = bisect_left(self._times, query.start), bisect_left(self._times, query.end)
        full, self._series = self._series, dict(self._by_time[lo:hi])
        try:
            return super().query(query)
        finally:
            self._series = full


def _record(metrics: FakeMetricStore, seed: int = 7) -> None:
    """Per-second data with incidents: error bursts, slow spells, a payments outage, a gap."""
    rnd = random.Random(seed)
    start = T0 - timedelta(minutes=2)
    for s in range(int((MINUTES + 2) * 60)):
        t = start + timedelta(seconds=s)
        minute = s // 60
        for res in ("order.place", "order.pay"):
            if res == "order.place" and 20 <= minute < 22:
                continue  # a gap: no data for this series
            burst = (minute % 9 == 4 and res == "order.pay") or 30 <= minute < 33
            slow = minute % 7 == 3
            fields = {
                "ok": float(rnd.randint(5, 10)),
                "error": float(rnd.randint(1, 3) if burst else rnd.choice((0, 0, 0, 1))),
                "rt": float(rnd.randint(70, 100) if slow else rnd.randint(20, 40)),
            }
            if res == "order.place" and minute % 11 == 5 and s % 2:
                del fields["error"]  # a field sometimes absent
            metrics.add("resource_stats", {"app": "shop", "resource": res, "instance": "n1"}, fields, t)
        if not 15 <= minute < 17:
            metrics.add("payments", {"app": "shop", "instance": "n1"}, {"success": 3.0}, t)


def _live(tmp_path, rules, metrics) -> list[tuple]:
    clock = FakeClock(T0)
    store = AlertStore(f"sqlite:///{tmp_path}/live.db")
    store.replace_rules(rules, by="t", now=clock.now())
    seen: list[tuple] = []
    ev = Evaluator(
        store,
        metrics,
        clock=clock,
        on_transition=lambda t: seen.append(
            (clock.now(), t.kind, tuple(sorted(t.record.labels.items())), t.record.value)
        ),
    )
    for when in step_times(T0, T0 + timedelta(minutes=MINUTES), INTERVAL):
        clock.t = when
        ev.evaluate()
    store.close()
    return seen


def test_backtest_equals_live_evaluation_on_a_fake_clock(tmp_path):
    metrics = IndexedStore()
    _record(metrics)
    live = _live(tmp_path, RULES, metrics)
    assert {k for _, k, _, _ in live} >= {"pending", "firing", "resolved", "cleared"}
    metrics.queries.clear()
    result = backtest(
        [parse_rule(r) for r in RULES], metrics, T0, T0 + timedelta(minutes=MINUTES), interval_s=INTERVAL
    )
    replay = sorted(
        (e.at, e.kind, tuple(sorted(e.labels.items())), e.value)
        for r in result.rules.values()
        for e in r.events
    )
    assert replay == sorted(live)
    by_rule = {r["name"]: result.rules[r["name"]] for r in RULES}
    assert by_rule["ErrSum"].mode == "windowed" and by_rule["RtP99"].mode == "bounded"
    assert by_rule["ErrGrowing"].mode == "per-step"
    for name in ("ErrSum", "RtMax", "PayGone", "RtP99"):
        assert by_rule[name].events, f"{name} never changed state: the data does not exercise it"


def test_windowed_shapes_read_each_aggregate_once_for_the_range(tmp_path):
    metrics = IndexedStore()
    _record(metrics)
    windowed = [parse_rule(r) for r in RULES if r["name"] in ("ErrSum", "ErrSumKeep", "RtMax", "ErrRatio")]
    result = backtest(windowed, metrics, T0, T0 + timedelta(minutes=MINUTES), interval_s=INTERVAL)
    # one query per evaluator shape (ErrSum + ErrRatio; ErrSumKeep filters on resource; RtMax), not per step
    assert result.queries == len(plan(windowed, T0)) == 3
    assert result.steps == MINUTES * 60 // INTERVAL + 1


def test_series_and_intervals_for_the_chart(tmp_path):
    metrics = IndexedStore()
    _record(metrics)
    rule = parse_rule(RULES[3])  # RtMax > 95
    end = T0 + timedelta(minutes=MINUTES)
    result = backtest([rule], metrics, T0, end, interval_s=INTERVAL, with_series=True)
    out = result.rules["RtMax"].to_dict(end)
    assert set(out["series"]) == {"app=shop,resource=order.pay", "app=shop,resource=order.place"}
    assert len(out["series"]["app=shop,resource=order.pay"]) == result.steps
    firing = [i for i in out["intervals"] if i["state"] == "firing"]
    assert firing and all(i["start"] < i["end"] for i in firing)
    # every firing span covers steps whose value is above the threshold
    pts = {p["time"]: p["value"] for p in out["series"]["app=shop,resource=order.pay"]}
    span = next(i for i in firing if i["labels"]["resource"] == "order.pay")
    assert pts[span["start"]] > 95


def test_a_failing_store_is_reported_per_rule():
    metrics = FakeMetricStore()
    metrics.fail_measurements.add("resource_stats")
    result = backtest([parse_rule(RULES[0]), parse_rule(RULES[8])], metrics, T0, T0 + timedelta(minutes=5))
    assert result.rules["ErrSum"].error and "store down" in result.rules["ErrSum"].error
    assert result.rules["PayGone"].error is None


def test_bad_interval_is_refused():
    with pytest.raises(ValueError, match="interval_s"):
        backtest([], FakeMetricStore(), T0, T0 + timedelta(minutes=5), interval_s=0)
