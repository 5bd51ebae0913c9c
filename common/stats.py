"""The one percentile of tradeguard: the metric stores, the traffic report and the benchmarks.

Nearest rank, exactly as InfluxQL's ``PERCENTILE(field, N)`` computes it (and so as the
InfluxDB store answers): sort the values, take the element of 1-based rank
``floor(n × N / 100 + 0.5)`` (the rank ``n × N / 100`` rounded half up), and no value when that
rank falls outside ``1..n`` (no values, or ``N`` so small that the rank rounds to 0). The value
is always one of the samples (never interpolated), so a p99 latency is a latency one request
really had, and the p99 of a traffic report is the p99 the dashboards show for the same samples.

It differs from the textbook nearest rank (``ceil(n × N / 100)``) by at most one rank: when the
fractional part of ``n × N / 100`` is below one half it picks the lower neighbour.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], pct: float) -> float | None:
    """The ``pct``-th percentile (``0 ≤ pct ≤ 100``) of ``values``, or None (see the module)."""
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"pct: must be between 0 and 100, got {pct!r}")
    ordered = sorted(values)
    rank = math.floor(len(ordered) * pct / 100.0 + 0.5)
    if rank < 1 or rank > len(ordered):
        return None
    return ordered[rank - 1]
