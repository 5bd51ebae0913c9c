"""Aggregation helpers shared by the stores: partial aggregates that merge, the percentile names
(computed by ``common.stats.percentile``, InfluxQL's definition), and turning partials into ``Row``
values."""

from __future__ import annotations

from dataclasses import dataclass

PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


@dataclass
class Partial:
    """A mergeable aggregate of one field in one bucket of one group."""

    n: int = 0
    s: float = 0.0
    lo: float | None = None
    hi: float | None = None
    last_ts: int | None = None
    last_v: float | None = None

    def add(self, n: int, s: float | None, lo: float | None, hi: float | None) -> None:
        if not n:
            return
        self.n += n
        self.s += s or 0.0
        self.lo = lo if self.lo is None or (lo is not None and lo < self.lo) else self.lo
        self.hi = hi if self.hi is None or (hi is not None and hi > self.hi) else self.hi

    def add_last(self, ts: int, v: float) -> None:
        if self.last_ts is None or ts > self.last_ts or (ts == self.last_ts and v > (self.last_v or v)):
            self.last_ts, self.last_v = ts, v

    def value(self, aggregate: str) -> float | None:
        if aggregate == "last":
            return self.last_v
        if self.n == 0:
            return None
        if aggregate == "sum":
            return self.s
        if aggregate == "mean":
            return self.s / self.n
        if aggregate == "max":
            return self.hi
        if aggregate == "min":
            return self.lo
        if aggregate == "count":
            return float(self.n)
        raise ValueError(f"aggregate {aggregate!r} is not a partial aggregate")
