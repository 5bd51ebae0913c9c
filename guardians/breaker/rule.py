"""Breaker rule: when to open a resource's circuit, and how it recovers.

The document form is ``guardians.schema.BreakerRuleModel``; ``BreakerRule`` is its compiled form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, get_args

from guardians.schema import BreakerRuleModel, BreakerStrategy

STRATEGIES: tuple[str, ...] = get_args(BreakerStrategy)
FIELDS: tuple[str, ...] = tuple(BreakerRuleModel.model_fields)


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

    @classmethod
    def from_model(cls, m: BreakerRuleModel) -> BreakerRule:
        return cls(
            resource=m.resource,
            strategy=m.strategy,
            threshold=m.threshold,
            max_rt_ms=m.max_rt_ms,
            stat_interval_ms=m.stat_interval_ms,
            min_requests=m.min_requests,
            recovery_s=m.recovery_s,
            probes=m.probes,
            shared=m.shared,
            name=m.name or f"breaker:{m.resource}:{m.strategy}",
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None and not (k == "shared" and v is False)}
