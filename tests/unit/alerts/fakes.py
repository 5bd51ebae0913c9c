"""Fakes for the alerts tests: a clock that moves only when told, and an in-memory metric store."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from collectors.query import Point, Query, Row
from collectors.stores.aggregate import PERCENTILES
from collectors.stores.common import check_query
from common.stats import percentile

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)  # a Monday


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t


def _aggregate(name: str, values: list[tuple[datetime, float]]) -> float | None:
    if not values:
        return None
    vs = [v for _, v in values]
    if name == "sum":
        return sum(vs)
    if name == "mean":
        return sum(vs) / len(vs)
    if name == "max":
        return max(vs)
    if name == "min":
        return min(vs)
    if name == "count":
        return float(len(vs))
    if name == "last":
        return max(values, key=lambda tv: tv[0])[1]
    if name in PERCENTILES:
        return percentile(vs, PERCENTILES[name])  # the stores' own (InfluxQL) percentile
    raise ValueError(name)


class FakeMetricStore:
    """Implements collectors.query.MetricStore in memory.

    It passes the same contract suite as the real stores (tests/integration/collectors/
    test_store_contract.py runs it as the ``fake`` backend): a point of the same series and
    timestamp replaces the fields it carries, queries are validated the same way, and the
    percentile is the stores' own.
    """

    kind = "fake"

    def __init__(self) -> None:
        self._series: dict[tuple, Point] = {}
        self.queries: list[Query] = []
        self.fail_measurements: set[str] = set()

    @property
    def points(self) -> list[Point]:
        return list(self._series.values())

    def clear(self) -> None:
        self._series.clear()

    def write(self, points: Sequence[Point]) -> None:
        for p in points:
            for name, value in p.fields.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"field {name} of {p.measurement} is not finite: {value!r}")
        for p in points:
            key = (p.measurement, tuple(sorted(p.tags.items())), p.time)
            old = self._series.get(key)
            fields = {**(old.fields if old else {}), **p.fields}
            self._series[key] = Point(p.measurement, dict(p.tags), fields, p.time)

    def add(self, measurement: str, tags: dict, fields: dict, time: datetime) -> None:
        self.write([Point(measurement, tags, fields, time)])

    def query(self, query: Query) -> list[Row]:
        check_query(query)
        self.queries.append(query)
        if query.measurement in self.fail_measurements:
            raise ConnectionError(f"store down for {query.measurement}")
        groups: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for p in self._series.values():
            if p.measurement != query.measurement or not (query.start <= p.time < query.end):
                continue
            if any(p.tags.get(k) != v for k, v in query.where.items()):
                continue
            if query.bucket_s:
                epoch = int(p.time.timestamp())
                bstart = datetime.fromtimestamp(epoch - epoch % query.bucket_s, UTC)
            else:
                bstart = query.start
            key = (bstart, tuple(p.tags.get(k, "") for k in query.group_by))
            for f in query.fields:
                if f in p.fields:
                    groups[key][f].append((p.time, p.fields[f]))
        rows = []
        for (bstart, tagvals), fields in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            rows.append(
                Row(
                    bstart,
                    dict(zip(query.group_by, tagvals, strict=True)),
                    {f: _aggregate(query.aggregate, fields.get(f, [])) for f in query.fields},
                )
            )
        return rows

    def health(self) -> dict:
        return {"ok": True, "reachable": True, "kind": self.kind}

    def close(self) -> None:
        pass
