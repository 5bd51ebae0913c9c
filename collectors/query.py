"""The metric store's query model and port, shared by the console, dashboards and alerts.

A ``Query`` reads one measurement: some fields, aggregated per time bucket,
optionally grouped by tags. Every store (embedded SQLite, InfluxDB) answers it
the same way; the contract test suite in tests/ holds them to that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Aggregate = Literal["sum", "mean", "max", "min", "last", "count", "p50", "p90", "p95", "p99"]
AGGREGATES: tuple[str, ...] = ("sum", "mean", "max", "min", "last", "count", "p50", "p90", "p95", "p99")


@dataclass(frozen=True)
class Point:
    """One measurement at one instant. Tags are low-cardinality strings; fields are finite numbers."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, float]
    time: datetime  # timezone-aware UTC


@dataclass(frozen=True)
class Query:
    measurement: str
    fields: Sequence[str]
    start: datetime  # inclusive, aware UTC
    end: datetime  # exclusive, aware UTC
    aggregate: Aggregate = "sum"
    bucket_s: int | None = None  # None: one bucket over the whole range
    where: Mapping[str, str] = field(default_factory=dict)  # tag equality filters
    group_by: Sequence[str] = ()


@dataclass(frozen=True)
class Row:
    """One bucket of one series. ``time`` is the bucket start; a field absent in a bucket is None."""

    time: datetime
    tags: Mapping[str, str]
    values: Mapping[str, float | None]


class MetricStore(Protocol):
    """Write and query. ``write`` raises on failure (the outbox retries); it never drops silently."""

    def write(self, points: Sequence[Point]) -> None: ...

    def query(self, query: Query) -> list[Row]: ...

    def health(self) -> dict: ...

    def close(self) -> None: ...
