"""Breaker rule: when to open a resource's circuit, and how it recovers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from guardians._validate import Fields

STRATEGIES = ("slow_ratio", "error_ratio", "error_count")
FIELDS = (
    "name",
    "resource",
    "strategy",
    "threshold",
    "max_rt_ms",
    "stat_interval_ms",
    "min_requests",
    "recovery_s",
    "probes",
    "shared",
)


@dataclass(frozen=True)
class BreakerRule:
    resource: str
    strategy: str
    threshold: float
    max_rt_ms: float | None = None
    stat_interval_ms: int = 1000
    min_requests: int = 5
    recovery_s: float = 10.0
    probes: int = 1
    shared: bool = False
    name: str = ""

    kind = "breaker"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None and not (k == "shared" and v is False)}


def parse_breaker(raw: Any, path: str, errors: list[tuple[str, str]]) -> BreakerRule | None:
    f = Fields(raw, path, errors, FIELDS)
    resource = f.string("resource", required=True)
    strategy = f.choice("strategy", STRATEGIES)
    if strategy == "error_count":
        threshold = f.number("threshold", required=True, ge=1, integer=True)
    else:
        threshold = f.number("threshold", required=True, ge=0, le=1)
    max_rt = f.number("max_rt_ms", gt=0, le=3_600_000)
    if strategy == "slow_ratio" and max_rt is None:
        f.fail(
            f"{path}.max_rt_ms", "is required when strategy is slow_ratio (calls slower than this are slow)"
        )
    if strategy != "slow_ratio":
        f.forbid("max_rt_ms", "only allowed with strategy slow_ratio")
    interval = f.number("stat_interval_ms", default=1000, ge=500, le=60_000, integer=True)
    min_requests = f.number("min_requests", default=5, ge=1, le=1_000_000, integer=True)
    recovery = f.number("recovery_s", default=10.0, gt=0, le=86_400)
    probes = f.number("probes", default=1, ge=1, le=1000, integer=True)
    shared = f.boolean("shared")
    name = f.string("name") or ""
    if not f.ok:
        return None
    assert resource is not None
    return BreakerRule(
        resource=resource,
        strategy=strategy,
        threshold=threshold,
        max_rt_ms=max_rt,
        stat_interval_ms=interval,
        min_requests=min_requests,
        recovery_s=recovery,
        probes=probes,
        shared=shared,
        name=name or f"breaker:{resource}:{strategy}",
    )
