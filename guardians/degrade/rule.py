"""Degrade rule: which registered fallback answers when a resource's call is blocked."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from guardians._validate import Fields

FIELDS = ("name", "resource", "fallback")
DEFAULT = "default"  # built in: the fallback passed at the call site, guard(..., fallback=)


@dataclass(frozen=True)
class DegradeRule:
    resource: str
    fallback: str = DEFAULT
    name: str = ""

    kind = "degrade"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_degrade(raw: Any, path: str, errors: list[tuple[str, str]]) -> DegradeRule | None:
    f = Fields(raw, path, errors, FIELDS)
    resource = f.string("resource", required=True)
    fallback = f.string("fallback", default=DEFAULT) or DEFAULT
    if fallback and not all(c.isalnum() or c in "_-." for c in fallback):
        f.fail(
            f"{path}.fallback",
            "must be a fallback name of letters, digits, _ - . (registered with "
            "engine.register_fallback; 'default' = the call site's fallback)",
        )
    name = f.string("name") or ""
    if not f.ok:
        return None
    assert resource is not None
    return DegradeRule(resource=resource, fallback=fallback, name=name or f"degrade:{resource}:{fallback}")
