"""Authority rule: calls of some origins refused (``deny``) or only some let through (``allow``).

The document form is ``guardians.schema.AuthorityRuleModel``; ``AuthorityRule`` is its compiled form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardians.schema import AuthorityRuleModel

FIELDS: tuple[str, ...] = tuple(AuthorityRuleModel.model_fields)


@dataclass(frozen=True)
class AuthorityRule:
    resource: str
    strategy: str
    origins: tuple[str, ...]
    name: str = ""

    kind = "authority"

    @classmethod
    def from_model(cls, m: AuthorityRuleModel) -> AuthorityRule:
        origins = tuple(dict.fromkeys(m.origins))
        return cls(
            resource=m.resource,
            strategy=m.strategy,
            origins=origins,
            name=m.name or f"authority:{m.resource}:{m.strategy}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "resource": self.resource, "strategy": self.strategy,
                "origins": list(self.origins)}
