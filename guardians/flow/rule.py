"""Flow rule: a threshold on a resource's QPS or concurrency.

The document form is ``guardians.schema.FlowRuleModel``; ``FlowRule`` is its compiled form, the
one the engine's checkers read on every call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, get_args

from guardians.schema import FlowAlgorithm, FlowBehavior, FlowGrade, FlowRuleModel, FlowStrategy

GRADES: tuple[str, ...] = get_args(FlowGrade)
STRATEGIES: tuple[str, ...] = get_args(FlowStrategy)
BEHAVIORS: tuple[str, ...] = get_args(FlowBehavior)
ALGORITHMS: tuple[str, ...] = get_args(FlowAlgorithm)
FIELDS: tuple[str, ...] = tuple(FlowRuleModel.model_fields)


@dataclass(frozen=True)
class FlowRule:
    resource: str
    threshold: float
    grade: str = "qps"
    strategy: str = "direct"
    ref_resource: str | None = None
    limit_app: str | None = None
    behavior: str = "reject"
    warm_up_s: float | None = None
    cold_factor: float = 3
    max_queue_ms: int | None = None
    algorithm: str | None = None
    min_limit: int | None = None
    cluster: bool = False
    name: str = ""

    kind = "flow"

    @classmethod
    def from_model(cls, m: FlowRuleModel) -> FlowRule:
        warm = m.behavior in ("warm_up", "warm_up_queue")
        strategy = m.strategy
        limit_app = m.limit_app
        if m.origin is not None:  # the earlier spelling: strategy chain + origin = limit_app
            strategy, limit_app = "direct", m.origin
        if limit_app == "default":
            limit_app = None  # every caller, as without it (Sentinel's default)
        return cls(
            resource=m.resource,
            threshold=m.threshold,
            grade=m.grade,
            strategy=strategy,
            ref_resource=m.ref_resource,
            limit_app=limit_app,
            behavior=m.behavior,
            warm_up_s=m.warm_up_s,
            cold_factor=m.cold_factor if warm else FlowRuleModel.model_fields["cold_factor"].default,
            max_queue_ms=m.max_queue_ms,
            algorithm=m.algorithm,
            min_limit=m.min_limit,
            cluster=m.cluster,
            name=m.name
            or f"flow:{m.resource}:{m.grade}:{m.behavior}"
            + (f":{limit_app}" if limit_app else "")
            + (f":{m.ref_resource}" if m.ref_resource else ""),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.behavior not in ("warm_up", "warm_up_queue"):
            d.pop("cold_factor")
        return {k: v for k, v in d.items() if v is not None and not (k == "cluster" and v is False)}
