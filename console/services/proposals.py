"""An alert's proposed fix on the alert detail: the proposal, its diff against the guardian rules in
force, its impact preview (``dashboards.impact`` replay of the resource's recorded traffic, like the
Rules page's preview) and applying it — through ``AlertService.proposal_plan`` / ``apply_proposal``.

``preview`` costs 1 alert-service read (the plan: the alert rule's proposal, the rules in force and
the proposed document) and 1 metric-store query (the resource's last ``minutes`` of traffic).
``apply`` submits the rules version the person saw with the preview, so a change of the rules in
between is refused as stale instead of overwriting it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.proposal_apply import NoProposal
from common.identity import Principal, allowed, roles_allowed
from console.services.alerts import ActionFailed
from console.services.common import FieldError, error_text, errors_from
from console.services.rules import impact as replay_impact
from console.services.rules import unified_diff
from dashboards.impact import FlowProposal, ImpactResult

log = logging.getLogger(__name__)

PREVIEW_MINUTES = 15


@dataclass(frozen=True)
class ProposalView:
    alert_id: int
    rule: str
    describe: str  # "degrade payment.charge: fallback queue_payment"
    summary: str
    action: str
    resource: str
    revert_on_resolve: bool
    rules_version: int  # in force when previewed: submitted with Apply
    diff: str  # unified YAML diff in force → proposed; empty when nothing would change
    invalid: str | None  # why the proposal cannot make a valid document
    impact: ImpactResult | None
    impact_text: str
    disabled_reason: str | None  # why Apply is off (role, invalid, nothing to change, applied)
    applied: dict[str, Any] | None  # the last application and its revert
    errors: list[str] = field(default_factory=list)


def _normalised(document: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (document or {}).items() if v not in (None, [], {})}


def _impact(
    svc: Any, plan: Mapping[str, Any], minutes: int, errors: list[str]
) -> tuple[ImpactResult | None, str]:
    p = plan["proposal"]
    resource = p["resource"]
    window = f"the last {minutes} min"
    try:
        if p["action"] == "set_flow":
            result = replay_impact(
                svc.metrics, svc.app, resource, FlowProposal(float(p["threshold"]), p["grade"]), minutes,
                svc.now(),
            )
        else:  # recorded traffic only: a fallback or a breaker is not replayed as blocks
            everything = FlowProposal(float("inf"))
            result = replay_impact(svc.metrics, svc.app, resource, everything, minutes, svc.now())
    except Exception as exc:
        errors.append(f"impact preview: {error_text(exc)}")
        return None, "Impact preview unavailable."
    if not result.has_traffic:
        return result, f"No recorded traffic for {resource} in {window}: nothing to replay."
    if p["action"] == "set_flow":
        text = (
            f"Replaying {window} of {resource}: the proposed {p['grade']} limit {float(p['threshold']):g} "
            f"per node would block {result.would_block:,} of {result.offered:,} calls "
            f"({100 * result.block_share:.1f} %) in {result.seconds_blocking} s; the rules in force "
            f"blocked {result.blocked_now:,}."
        )
        if result.notes:
            text += " " + " ".join(result.notes)
        return result, text
    if p["action"] == "degrade":
        return result, (
            f"{resource} in {window}: {result.offered:,} calls, {result.blocked_now:,} blocked by the rules "
            f"in force. With fallback {p['fallback']} those blocked calls are answered by the fallback "
            "instead of failing; the fallback itself blocks nothing."
        )
    return result, (
        f"{resource} in {window}: {result.offered:,} calls, {result.blocked_now:,} blocked by the rules in "
        f"force. A breaker opens when the error ratio passes {float(p['threshold']):g} within its window: "
        "its blocks depend on the errors over time and are not replayed."
    )


def preview(
    svc: Any, alert: Mapping[str, Any], principal: Principal | None = None, *, minutes: int = PREVIEW_MINUTES
) -> ProposalView | None:
    """The alert's proposal ready to show, or None when its rule proposes nothing."""
    try:
        plan = svc.alerts.proposal_plan(int(alert["id"]))
    except NoProposal:
        return None
    except Exception as exc:  # an invalid stored rule, no rule store wired, a store error
        return ProposalView(
            alert_id=int(alert["id"]), rule=str(alert.get("rule") or ""), describe="", summary="",
            action="", resource="", revert_on_resolve=False, rules_version=0, diff="", invalid=None,
            impact=None, impact_text="", disabled_reason=f"the proposal cannot be read: {error_text(exc)}",
            applied=None, errors=[error_text(exc)],
        )
    p = plan["proposal"]
    errors: list[str] = []
    diff = ""
    if plan["proposed"] is not None:
        name = f"version {plan['rules_version']} (in force)" if plan["rules_version"] else "no rules yet"
        diff = unified_diff(_normalised(plan["current"]), _normalised(plan["proposed"]), name, "proposed")
    result, text = _impact(svc, plan, minutes, errors)
    applied = plan.get("applied")
    reason = None
    if principal is not None and not allowed(principal, "rules.apply"):
        reason = (
            f"you are signed in as {principal.name} ({principal.role}): applying rules needs role "
            f"{' or '.join(roles_allowed('rules.apply'))}"
        )
    elif plan["error"]:
        reason = plan["error"]
    elif alert.get("state") not in ("firing", "pending"):
        reason = f"the alert is {alert.get('state')}: a proposal is applied while its alert is open"
    elif not plan["changes"]:
        reason = f"the rules in force (v{plan['rules_version']}) already contain this proposal"
    return ProposalView(
        alert_id=int(plan["alert_id"]),
        rule=str(plan["rule"]),
        describe=str(plan["describe"]),
        summary=str(p.get("summary") or ""),
        action=str(p["action"]),
        resource=str(p["resource"]),
        revert_on_resolve=bool(p.get("revert_on_resolve")),
        rules_version=int(plan["rules_version"]),
        diff=diff,
        invalid=plan["error"],
        impact=result,
        impact_text=text,
        disabled_reason=reason,
        applied=applied,
        errors=errors,
    )


def apply(
    svc: Any, alert_id: int, *, by: str, expected_rules_version: int, principal: Principal | None = None
) -> dict[str, Any]:
    """Apply the alert's proposal as ``principal`` (or ``by`` on a console without sign-in), only if the
    rules in force are still ``expected_rules_version``; ``ActionFailed`` with the refusal otherwise."""
    if principal is None and not (by or "").strip():
        raise ActionFailed([FieldError("by", "your name is required: every rule change records who made it")])
    try:
        out = svc.alerts.apply_proposal(
            int(alert_id),
            (by or "").strip() or None,
            expected_rules_version=int(expected_rules_version),
            principal=principal,
        )
    except Exception as exc:
        raise ActionFailed(errors_from(exc)) from exc
    log.info("proposal of alert %s applied from the console: %s", alert_id, out)
    return out
