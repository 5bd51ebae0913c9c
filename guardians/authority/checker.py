"""Authority checker: the first check of a resource's chain (as Sentinel's AuthoritySlot)."""

from __future__ import annotations

from collections.abc import Mapping

from guardians.authority.rule import AuthorityRule
from guardians.context import current_origin
from guardians.errors import AuthorityBlocked
from guardians.stat import ResourceNode


class AuthorityChecker:
    has_exit = False
    lock_free = True  # stateless: exact without the engine's node lock

    def __init__(self, rule: AuthorityRule) -> None:
        self.rule = rule
        self.resource = rule.resource
        self.origins = frozenset(rule.origins)
        self.deny = rule.strategy == "deny"

    def check(
        self, node: ResourceNode | None, t: float, args: Mapping[str, str] | None, origin: str | None
    ) -> float:
        o = origin if origin is not None else current_origin()
        if (o in self.origins) is self.deny:
            raise AuthorityBlocked(
                self.resource,
                self.rule,
                0.0,
                detail=f"authority rule {self.rule.name}: origin {o!r} is "
                f"{'deny-listed' if self.deny else 'not allow-listed'} on {self.resource}",
            )
        return 0.0


def build_authority(rules: tuple[AuthorityRule, ...]) -> dict[str, list[AuthorityChecker]]:
    out: dict[str, list[AuthorityChecker]] = {}
    for r in dict.fromkeys(rules):
        out.setdefault(r.resource, []).append(AuthorityChecker(r))
    return out
