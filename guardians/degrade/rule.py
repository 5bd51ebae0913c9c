"""Degrade rule: which registered fallback answers when a resource's call is blocked.

The document form is ``guardians.schema.DegradeRuleModel``; ``DegradeRule`` is its compiled form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from guardians.schema import DegradeRuleModel

FIELDS: tuple[str, ...] = tuple(DegradeRuleModel.model_fields)
DEFAULT: str = DegradeRuleModel.model_fields["fallback"].default  # the call site's fallback


@dataclass(frozen=True)
class DegradeRule:
    resource: str
    fallback: str = DEFAULT
    name: str = ""

    kind = "degrade"

    @classmethod
    def from_model(cls, m: DegradeRuleModel) -> DegradeRule:
        return cls(
            resource=m.resource, fallback=m.fallback, name=m.name or f"degrade:{m.resource}:{m.fallback}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
