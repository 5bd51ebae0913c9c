"""System rule: one node-wide metric and its threshold (applies to inbound entries).

The document form is ``guardians.schema.SystemRuleModel`` (which also decides the default
strategy); ``SystemRule`` is its compiled form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, get_args

from guardians.schema import SystemMetric, SystemRuleModel, SystemStrategy

METRICS: tuple[str, ...] = get_args(SystemMetric)
STRATEGIES: tuple[str, ...] = get_args(SystemStrategy)
FIELDS: tuple[str, ...] = tuple(SystemRuleModel.model_fields)


@dataclass(frozen=True)
class SystemRule:
    metric: str
    threshold: float
    strategy: str = "plain"
    name: str = ""

    kind = "system"
    resource = "*"

    @classmethod
    def from_model(cls, m: SystemRuleModel) -> SystemRule:
        assert m.strategy is not None  # the model's conditional default filled it in
        return cls(
            metric=m.metric, threshold=m.threshold, strategy=m.strategy, name=m.name or f"system:{m.metric}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
