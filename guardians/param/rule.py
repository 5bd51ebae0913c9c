"""Param rule: at most ``threshold`` calls per ``duration_s`` for each value of one argument.

The document form is ``guardians.schema.ParamRuleModel``; ``ParamRule`` is its compiled form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardians.schema import ParamRuleModel

FIELDS: tuple[str, ...] = tuple(ParamRuleModel.model_fields)


@dataclass(frozen=True)
class ParamRule:
    resource: str
    param: str
    threshold: int
    duration_s: int = 1
    burst: int = 0
    exceptions: tuple[tuple[str, int], ...] = ()
    cluster: bool = False
    name: str = ""
    grade: str = "qps"
    behavior: str = "reject"
    max_queue_ms: int | None = None
    match_strategy: str | None = None
    pattern: str | None = None

    kind = "param"

    @classmethod
    def from_model(cls, m: ParamRuleModel) -> ParamRule:
        return cls(
            resource=m.resource,
            param=m.param,
            threshold=m.threshold,
            duration_s=m.duration_s,
            burst=m.burst,
            exceptions=tuple(sorted((m.exceptions or {}).items())),
            cluster=m.cluster,
            name=m.name or f"param:{m.resource}:{m.param}",
            grade=m.grade,
            behavior=m.behavior,
            max_queue_ms=m.max_queue_ms,
            match_strategy=m.match_strategy,
            pattern=m.pattern,
        )

    def limit_for(self, value: str) -> int:
        for v, n in self.exceptions:
            if v == value:
                return n
        return self.threshold

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "resource": self.resource,
            "param": self.param,
            "threshold": self.threshold,
            "duration_s": self.duration_s,
            "burst": self.burst,
        }
        if self.exceptions:
            d["exceptions"] = dict(self.exceptions)
        if self.cluster:
            d["cluster"] = True
        if self.grade != "qps":
            d["grade"] = self.grade
            del d["duration_s"], d["burst"]
        if self.behavior != "reject":
            d["behavior"] = self.behavior
            d["max_queue_ms"] = self.max_queue_ms
            del d["burst"]
        if self.match_strategy:
            d["match_strategy"] = self.match_strategy
            d["pattern"] = self.pattern
        return d
