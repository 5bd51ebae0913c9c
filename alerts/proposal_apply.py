"""Apply an alert's proposed fix to the guardian rules, and revert it when the alert resolves.

``Proposals`` works on the alert store and the guardian rule store (``guardians.store.RuleStore``,
passed in by the composition root as a ``GuardRulesPort`` with the application's name):

- ``plan(alert_id)``: the alert's proposal, the rules in force (version and document) and the
  document the proposal makes of them — what the console previews;
- ``apply(alert_id, by, expected_rules_version=, principal=)``: stores that document as the next
  guardian rule version, whose ``why`` names the alert ("proposal of alert #13
  PaymentSuccessRateLow: …"), and records a ``proposal_applied`` event on the alert (the audit link
  both ways). Refused with a message naming the field: no permission (``common.identity``
  ``rules.apply``), no or invalid proposal, a closed alert, rules changed since the preview (stale),
  nothing to change;
- ``on_resolved(alert, by)``: when the alert resolves (the evaluator's transition or a person) and
  its applied proposal asked ``revert_on_resolve``, restores the rules it replaced — only while the
  proposal's version is still in force; otherwise a ``proposal_not_reverted`` event says why.

The ``proposal_applied`` event's detail ends with ``rules APP vBASE → vNEW`` (and ``reverts when
resolved``; no event value: the timeline shows values in the alert's unit). That line is what
the revert reads back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from alerts.errors import AlertConfigError, InvalidAction
from alerts.proposal import ProposalDoc, ProposalError, proposed_document
from alerts.rulefile import parse_rule
from alerts.store import AlertRecord, AlertStore
from common.clock import Clock, SystemClock
from common.identity import Principal, require
from common.redact import redact_text

log = logging.getLogger(__name__)

APPLIED = "proposal_applied"
REVERTED = "proposal_reverted"
NOT_REVERTED = "proposal_not_reverted"
REVERT_MARK = "reverts when resolved"
_APPLIED_RE = re.compile(r"rules (?P<app>\S+) v(?P<base>\d+) → v(?P<new>\d+)")


class NoProposal(ProposalError):
    """The alert's rule carries no proposal (or is gone): there is nothing to apply."""


class GuardRulesPort(Protocol):
    """``guardians.store.RuleStore``: the versioned guardian rules of each application."""

    def current(self, app: str) -> Any: ...  # RuleVersion | None
    def apply(self, app: str, document: Mapping[str, Any], by: str, why: str) -> int: ...
    def rollback(self, app: str, n: int, by: str, why: str) -> int: ...


def describe(p: ProposalDoc) -> str:
    """``degrade payment.charge: fallback queue_payment`` and the like."""
    if p.action == "set_flow":
        return f"set_flow {p.resource}: {p.grade} limit {p.threshold:g}"
    if p.action == "degrade":
        return f"degrade {p.resource}: fallback {p.fallback}"
    return f"open_breaker {p.resource}: error ratio {p.threshold:g}"


@dataclass(frozen=True)
class ProposalPlan:
    alert_id: int
    rule: str
    app: str
    proposal: ProposalDoc
    rules_version: int  # in force; 0 when the app has no rules yet
    current: dict[str, Any]  # the document in force
    proposed: dict[str, Any] | None  # None when the proposal is invalid (see ``error``)
    error: str | None = None

    @property
    def changes(self) -> bool:
        return self.proposed is not None and self.proposed != self.current

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "app": self.app,
            "proposal": self.proposal.model_dump(),
            "describe": describe(self.proposal),
            "rules_version": self.rules_version,
            "current": self.current,
            "proposed": self.proposed,
            "changes": self.changes,
            "error": self.error,
        }


class Proposals:
    def __init__(
        self, store: AlertStore, guard: GuardRulesPort, app: str, *, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.guard = guard
        self.app = app
        self.clock = clock or SystemClock()

    # ------------------------------------------------------------ reads
    def proposal_of(self, rule_name: str) -> ProposalDoc:
        """The proposal of the alert rule in force named ``rule_name``; ``ProposalError`` naming the
        field when the rule is gone, carries none, or its proposal is invalid."""
        docs = {d.get("name"): d for d in self.store.rule_documents()}
        doc = docs.get(rule_name)
        if doc is None:
            raise NoProposal(f"rule: alert rule {rule_name} no longer exists; it proposes nothing")
        if not doc.get("proposal"):
            raise NoProposal(f"proposal: alert rule {rule_name} carries no proposal")
        try:
            rule = parse_rule(doc, f"rule {rule_name}")
        except AlertConfigError as exc:
            raise ProposalError(
                "invalid proposal: " + "; ".join(f"{p}: {m}" for p, m in exc.errors)
            ) from exc
        assert rule.proposal is not None
        return rule.proposal

    def plan(self, alert_id: int) -> ProposalPlan:
        alert = self.store.get_alert(alert_id)
        proposal = self.proposal_of(alert.rule)
        cur = self.guard.current(self.app)
        version = cur.version if cur is not None else 0
        current = dict(cur.document) if cur is not None else {}
        try:
            proposed, error = proposed_document(current, proposal), None
        except ProposalError as exc:
            proposed, error = None, str(exc)
        return ProposalPlan(alert.id, alert.rule, self.app, proposal, version, current, proposed, error)

    def applied(self, alert_id: int) -> dict[str, Any] | None:
        """The last ``proposal_applied`` event of the alert with what followed it: ``{at, by, app,
        base, version, revert_on_resolve, reverted: None | event}``; None when never applied."""
        out: dict[str, Any] | None = None
        for e in self.store.events(alert_id):
            if e["kind"] == APPLIED:
                m = _APPLIED_RE.search(e.get("detail") or "")
                if m is None:
                    continue
                out = {
                    "at": e["at"],
                    "by": e["by"],
                    "detail": e["detail"],
                    "app": m["app"],
                    "base": int(m["base"]),
                    "version": int(m["new"]),
                    "revert_on_resolve": REVERT_MARK in (e.get("detail") or ""),
                    "reverted": None,
                }
            elif e["kind"] in (REVERTED, NOT_REVERTED) and out is not None:
                out["reverted"] = e
        return out

    # ------------------------------------------------------------ apply
    def apply(
        self,
        alert_id: int,
        by: str | None = None,
        *,
        expected_rules_version: int | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Apply the alert's proposal as the next guardian rule version (see the module docstring).
        ``expected_rules_version``: the version in force the person saw with the preview."""
        if principal is not None:
            require(principal, "rules.apply")  # Forbidden: "user olga (oncall) may not apply rules; …"
            by = principal.name
        who = (by or "").strip()
        if not who:
            raise AlertConfigError([("by", "required: who applies the proposal (a name)")])
        alert = self.store.get_alert(alert_id)
        if not alert.open:
            raise InvalidAction(
                f"Alert #{alert.id} {alert.rule} is {alert.state}: a proposal is applied while its alert "
                "is open; nothing was done"
            )
        plan = self.plan(alert_id)
        if expected_rules_version is not None and int(expected_rules_version) != plan.rules_version:
            cur = self.guard.current(self.app)
            who_changed = f", by {cur.created_by}: {cur.why}" if cur is not None else ""
            raise ProposalError(
                f"expected_rules_version: stale proposal — the rules of {self.app} changed since you saw "
                f"the preview (you saw v{expected_rules_version}; v{plan.rules_version} is in force"
                f"{who_changed}). Review the new preview and apply again; nothing was done"
            )
        if plan.proposed is None:
            raise ProposalError(plan.error or "invalid proposal")
        if not plan.changes:
            raise ProposalError(
                f"proposal: the rules in force (v{plan.rules_version}) already contain it "
                f"({describe(plan.proposal)}); nothing was done"
            )
        why = f"proposal of alert #{alert.id} {alert.rule}: {describe(plan.proposal)}"
        version = self.guard.apply(self.app, plan.proposed, who, why)
        now = self.clock.now()
        detail = f"{describe(plan.proposal)} · rules {self.app} v{plan.rules_version} → v{version}"
        if plan.proposal.revert_on_resolve:
            detail += f" · {REVERT_MARK}"
        self.store.add_event(alert.id, now, APPLIED, by=who, detail=detail)
        log.warning("alert %s %s: proposal applied by %s as rules %s v%s", alert.id, alert.rule, who,
                    self.app, version)
        return {
            "alert_id": alert.id,
            "rule": alert.rule,
            "app": self.app,
            "version": version,
            "replaced": plan.rules_version,
            "why": why,
            "by": who,
            "revert_on_resolve": plan.proposal.revert_on_resolve,
        }

    # ------------------------------------------------------------ revert
    def on_resolved(self, alert: AlertRecord, by: str | None = None) -> dict[str, Any] | None:
        """Restore the rules an applied ``revert_on_resolve`` proposal of ``alert`` replaced, if its
        version is still in force; record either outcome on the alert. None when nothing was asked."""
        applied = self.applied(alert.id)
        if applied is None or not applied["revert_on_resolve"] or applied["reverted"] is not None:
            return None
        app, base, version = applied["app"], applied["base"], applied["version"]
        now = self.clock.now()
        who = (by or "").strip() or "tradeguard (alert resolved)"
        try:
            cur = self.guard.current(app)
            in_force = cur.version if cur is not None else 0
            if in_force != version:
                changed = f" ({cur.created_by}: {cur.why})" if cur is not None else ""
                detail = (
                    f"rules {app} not reverted: v{in_force} is in force{changed}, not the proposal's "
                    f"v{version}; restore v{base} by hand if it is still wanted"
                )
                self.store.add_event(alert.id, now, NOT_REVERTED, by=who, detail=detail)
                log.warning("alert %s %s: %s", alert.id, alert.rule, detail)
                return {"reverted": False, "detail": detail}
            why = f"revert of the proposal of alert #{alert.id} {alert.rule}: the alert resolved"
            if base == 0:
                restored = self.guard.apply(app, {}, who, why)
            else:
                restored = self.guard.rollback(app, base, who, why)
        except Exception as exc:
            detail = f"rules {app} not reverted: {redact_text(f'{type(exc).__name__}: {exc}')}"
            log.exception("alert %s %s: reverting its proposal failed", alert.id, alert.rule)
            self.store.add_event(alert.id, now, NOT_REVERTED, by=who, detail=detail)
            return {"reverted": False, "detail": detail}
        detail = f"rules {app} v{version} → v{restored}: restored the rules of v{base}"
        self.store.add_event(alert.id, now, REVERTED, by=who, detail=detail)
        log.warning("alert %s %s resolved: proposal reverted, %s", alert.id, alert.rule, detail)
        return {"reverted": True, "version": restored, "detail": detail}
