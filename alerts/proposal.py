"""An alert rule's proposed fix: a guardian rule change on-call can apply in one click.

``ProposalDoc`` is the ``proposal`` field of an alert rule (alerts/schema.py ``RuleDoc``):

- ``set_flow``: set (usually lower) a flow limit — ``resource``, ``threshold``, ``grade`` (qps |
  concurrency);
- ``degrade``: switch on a fallback for a resource — ``resource``, ``fallback`` (e.g. ``queue_payment``);
- ``open_breaker``: a circuit breaker for a dependency — ``resource`` and ``threshold`` (error ratio).

``revert_on_resolve`` asks for the rules in force before the proposal to come back when the alert
resolves. ``proposed_document`` is pure: the rules in force + the proposal → the new document,
validated by guardians' own parser (``ProposalError`` names the field otherwise).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guardians.errors import RuleValidationError
from guardians.rules import canonical


class ProposalError(ValueError):
    """A proposal that cannot be applied: invalid, refused or stale."""


class ProposalDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["set_flow", "degrade", "open_breaker"] = Field(description="the kind of rule change")
    resource: str = Field(min_length=1, max_length=200, description="the guarded resource")
    threshold: float | None = Field(None, ge=0, description="set_flow: the limit; open_breaker: error ratio")
    grade: Literal["qps", "concurrency"] = Field("qps", description="set_flow: qps or concurrency")
    fallback: str | None = Field(None, description="degrade: the fallback to switch on, e.g. queue_payment")
    revert_on_resolve: bool = Field(False, description="restore the previous rules when the alert resolves")
    summary: str = Field("", description="what on-call reads next to the button")

    @model_validator(mode="after")
    def _fields_for_action(self) -> ProposalDoc:
        if self.action in ("set_flow", "open_breaker") and self.threshold is None:
            raise ValueError(f"proposal.threshold: required for action {self.action}")
        if self.action == "degrade" and not self.fallback:
            raise ValueError("proposal.fallback: required for action degrade (e.g. queue_payment)")
        return self

    def rule(self) -> tuple[str, dict[str, Any]]:
        """(rule type, guardian rule) of the proposal."""
        name = f"alert-proposal:{self.action}:{self.resource}"
        if self.action == "set_flow":
            return "flow", {
                "name": name,
                "resource": self.resource,
                "grade": self.grade,
                "threshold": self.threshold,
            }
        if self.action == "degrade":
            return "degrade", {"name": name, "resource": self.resource, "fallback": self.fallback}
        return "breaker", {
            "name": name,
            "resource": self.resource,
            "strategy": "error_ratio",
            "threshold": self.threshold,
        }


def proposed_document(current: Mapping[str, Any] | None, proposal: ProposalDoc) -> dict[str, Any]:
    """The rules in force with the proposal's rule in place of any rule of the same type and resource
    (for flow: of the same grade too), validated and canonical."""
    doc = copy.deepcopy(dict(current or {}))
    kind, rule = proposal.rule()
    kept = []
    for r in doc.get(kind) or []:
        same = r.get("resource") == proposal.resource and (
            kind != "flow" or r.get("grade", "qps") == proposal.grade
        )
        if not same:
            kept.append(r)
    doc[kind] = [*kept, rule]
    try:
        return canonical(doc)
    except RuleValidationError as exc:
        raise ProposalError("invalid proposal: " + "; ".join(f"{p}: {m}" for p, m in exc.errors)) from exc
