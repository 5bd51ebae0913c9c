"""The ``Blocked`` hierarchy: a guarded call refused by a rule, carrying that rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Blocked(Exception):
    """A call refused by a rule. ``kind`` is flow | breaker | system | param | authority."""

    kind = "blocked"
    status = 429
    # a blocked HTTP route: the path parameters of the request (for a route fallback, e.g. the shop)
    path_params: Mapping[str, str] | None = None

    def __init__(
        self,
        resource: str,
        rule: Any,
        retry_after_s: float = 1.0,
        *,
        args: Mapping[str, str] | None = None,
        detail: str = "",
    ) -> None:
        self.resource = resource
        self.rule = rule
        self.retry_after_s = retry_after_s
        self.args_ = args
        self.detail = detail or f"{self.kind} rule blocked {resource}"
        super().__init__(self.detail)

    @property
    def rule_name(self) -> str:
        return getattr(self.rule, "name", "") or repr(self.rule)

    def __reduce__(self):  # picklable across processes
        return (_rebuild, (type(self), self.resource, self.rule, self.retry_after_s, self.args_, self.detail))


def _rebuild(cls, resource, rule, retry_after_s, args, detail):  # type: ignore[no-untyped-def]
    return cls(resource, rule, retry_after_s, args=args, detail=detail)


class FlowBlocked(Blocked):
    kind = "flow"
    status = 429


class ParamBlocked(Blocked):
    kind = "param"
    param_name: str | None = None  # the limited parameter and the value over its threshold
    param_value: str | None = None
    status = 429


class AuthorityBlocked(Blocked):
    """The caller's origin is deny-listed (or not allow-listed) on the resource: HTTP 403."""

    kind = "authority"


class SystemBlocked(Blocked):
    kind = "system"
    status = 429


class BreakerBlocked(Blocked):
    kind = "breaker"
    status = 503


class RuleValidationError(ValueError):
    """A rule document was rejected. ``errors`` is a list of (path, message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        lines = "; ".join(f"{p}: {m}" for p, m in self.errors[:20])
        more = f" (+{len(self.errors) - 20} more)" if len(self.errors) > 20 else ""
        super().__init__(f"invalid rule document: {lines}{more}")
