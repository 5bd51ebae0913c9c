"""The Resources page's "who is blocked": top origins, client IPs, buyers and SKUs refused in a range.

Read from the ``blocks`` measurement (the guardians' block log, one point per second and key):
two metric-store queries, summed over the range and all instances.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from collectors.query import MetricStore, Query
from console.services.common import run_query
from dashboards.ranges import Window, window

# which block-log params answer "which client IP / buyer / SKU"
GROUPS: dict[str, tuple[str, ...]] = {
    "client_ip": ("client_ip",),
    "buyer": ("buyer", "body:buyer_id", "header:X-Buyer-Id"),
    "sku": ("sku", "body:sku"),
}
TOP = 10


@dataclass(frozen=True)
class BlockedData:
    window: Window
    origins: list[tuple[str, int]]
    client_ips: list[tuple[str, int]]
    buyers: list[tuple[str, int]]
    skus: list[tuple[str, int]]
    total: int
    queries: int = 2
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.total == 0


def read_blocked(
    metrics: MetricStore, app: str, range_key: str, now: datetime, *, top: int = TOP
) -> BlockedData:
    w = window(range_key, now)
    errors: list[str] = []
    where = {"app": app}
    by_origin = run_query(
        metrics, Query("blocks", ["count"], w.start, w.end, "sum", None, where, ("origin",)), errors,
        "blocks by origin",
    )
    by_value = run_query(
        metrics, Query("blocks", ["count"], w.start, w.end, "sum", None, where, ("param", "value")), errors,
        "blocks by value",
    )
    origins: Counter[str] = Counter()
    for r in by_origin:
        origins[r.tags.get("origin", "-")] += int(r.values.get("count") or 0)
    groups: dict[str, Counter[str]] = {g: Counter() for g in GROUPS}
    for r in by_value:
        param, value = r.tags.get("param", "-"), r.tags.get("value", "-")
        for g, params in GROUPS.items():
            if param in params and value != "-":
                groups[g][value] += int(r.values.get("count") or 0)
    return BlockedData(
        window=w,
        origins=origins.most_common(top),
        client_ips=groups["client_ip"].most_common(top),
        buyers=groups["buyer"].most_common(top),
        skus=groups["sku"].most_common(top),
        total=sum(origins.values()),
        errors=errors,
    )
