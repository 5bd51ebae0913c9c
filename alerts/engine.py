"""The alerting engine: evaluation → grouping/silencing → escalation → delivery, on one clock.

The worker calls :meth:`AlertEngine.cycle` every evaluation interval,
:meth:`AlertEngine.poll_breakers` every couple of seconds (breaker rules only, so an
open breaker written to ``breaker_events`` by any node fires within that poll) and
:meth:`AlertEngine.deliver` every few seconds. In-process callers may instead hand
breaker events to :meth:`AlertEngine.on_breaker_event`.

Configuration comes from the control DB (sections written by ``alerts rules apply``),
falling back to the shipped defaults (``alerts/default_rules.yaml``) for the route and
inhibit rules, and to the settings for channels (``TRADEGUARD_ALERT_WEBHOOK_URL``,
``TRADEGUARD_SMTP_URL``, kept as ``${…}`` references resolved when sending; a ``log`` channel
always exists). Without an escalation policy
named like the route's receiver, the policy is a single step notifying every channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alerts.dispatch import Dispatcher, muting, next_escalations
from alerts.errors import AlertConfigError
from alerts.evaluator import CycleReport, Evaluator, NodeSource
from alerts.model import (
    FIRING,
    RESOLVED,
    AlertConfig,
    Channel,
    EscalationPolicy,
    EscalationStep,
    InhibitRule,
    Rotation,
    Route,
)
from alerts.notify import Deliverer, Sender, build_payload, env_channels, settings_refs
from alerts.proposal_apply import GuardRulesPort, Proposals
from alerts.rulefile import default_config, parse_document, rule_to_dict
from alerts.state import Transition
from alerts.store import AlertRecord, AlertStore
from collectors.query import MetricStore
from common.clock import Clock, FakeClock, SystemClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveConfig:
    route: Route
    inhibit_rules: tuple[InhibitRule, ...]
    channels: dict[str, Channel]
    policies: dict[str, EscalationPolicy]
    rotations: dict[str, Rotation]

    def policy(self) -> EscalationPolicy:
        p = self.policies.get(self.route.receiver)
        if p is not None:
            return p
        return EscalationPolicy(self.route.receiver, (EscalationStep(tuple(sorted(self.channels))),))


def load_active_config(
    store: AlertStore,
    *,
    webhook_url: str | None = None,
    smtp_url: str | None = None,
    defaults: AlertConfig | None = None,
) -> ActiveConfig:
    """The configuration in force: control DB sections over the shipped defaults and the environment."""
    defaults = defaults or default_config()
    sections = store.config_sections()
    try:
        cfg = parse_document(sections) if sections else None
    except AlertConfigError as exc:
        log.error("alert configuration in the control DB is invalid, using defaults: %s", exc)
        cfg = None
    channels = {c.name: c for c in env_channels(webhook_url, smtp_url)}
    if cfg is not None and cfg.channels:
        channels.update({c.name: c for c in cfg.channels})
    return ActiveConfig(
        route=(cfg.route if cfg is not None and cfg.route is not None else defaults.route) or Route(),
        inhibit_rules=(
            cfg.inhibit_rules if cfg is not None and cfg.inhibit_rules is not None else defaults.inhibit_rules
        )
        or (),
        channels=channels,
        policies={p.name: p for p in ((cfg.escalation_policies if cfg is not None else None) or ())},
        rotations={r.name: r for r in ((cfg.rotations if cfg is not None else None) or ())},
    )


def ensure_default_rules(store: AlertStore, now: datetime, by: str = "tradeguard (defaults)") -> bool:
    """Install the shipped rules when the control DB has none; True when it did. The install is
    version 1 of the rule history, so a later change's diff shows only that change."""
    from alerts.rule_versions import AlertRuleVersions

    if store.rule_documents():
        return False
    rules = default_config().rules or ()
    store.replace_rules([rule_to_dict(r) for r in rules], by=by, now=now)
    AlertRuleVersions(store, clock=FakeClock(now)).record(by=by, why="default alert rules installed")
    log.info("installed %d default alert rules", len(rules))
    return True


def queue_escalation(
    store: AlertStore,
    cfg: ActiveConfig,
    alert: AlertRecord,
    step_i: int,
    now: datetime,
    conn: Any,
    *,
    external_url: str,
    by: str | None = None,
) -> list[int]:
    """Queue the notifications of escalation step ``step_i`` (0-based) for ``alert`` and record it on
    the alert (step, time, an ``escalated`` event naming ``by`` for a manual escalation)."""
    policy = cfg.policy()
    step = policy.steps[step_i]
    extra: dict[str, Any] = {}
    who = None
    if step.oncall:
        rotation = cfg.rotations.get(step.oncall)
        member = rotation.on_call(now) if rotation else None
        if member is not None:
            who = member.name
            extra = {"oncall": member.name, "to": [member.email] if member.email else []}
    payload = build_payload(
        receiver=f"{policy.name}/step{step_i + 1}",
        group_key=f"escalation:{alert.fingerprint}",
        group_labels={"alertname": alert.labels.get("alertname", alert.rule)},
        alerts=[alert],
        external_url=external_url,
    )
    if who:
        payload["oncall"] = who
    queued = [
        store.enqueue(
            channel=channel,
            reason="escalation",
            group_key=None,
            alert_ids=[alert.id],
            payload=payload,
            extra=extra,
            now=now,
            conn=conn,
        )
        for channel in step.channels
    ]
    alert.escalation_step, alert.escalated_at = step_i, now
    store.update_alert(alert, conn, ("escalation_step", "escalated_at"))
    detail = f"step {step_i + 1} via {', '.join(step.channels)}" + (f", on call: {who}" if who else "")
    store.add_event(
        alert.id, now, "escalated", by=by, detail=detail if by is None else f"{detail} (by hand)", conn=conn
    )
    log.warning(
        "alert %s %s %s: escalated to %s",
        alert.id,
        alert.rule,
        f"escalated by {by}" if by else "unacknowledged",
        detail,
    )
    return queued


class AlertEngine:
    def __init__(
        self,
        store: AlertStore,
        metrics: MetricStore,
        *,
        clock: Clock | None = None,
        nodes: NodeSource | None = None,
        webhook_url: str | None = None,
        smtp_url: str | None = None,
        external_url: str = "http://127.0.0.1:8501",
        senders: Mapping[str, Sender] | None = None,
        max_attempts: int = 5,
        lease: Any = None,
        guard_rules: GuardRulesPort | None = None,
        guard_app: str = "",
    ) -> None:
        """``lease``: the worker leader's lease (``collectors.lease.Lease``); when given, deliveries
        are claimed under its fencing token (the worker also sets ``store.fence``). ``guard_rules``
        (``guardians.store.RuleStore``) of ``guard_app``: an alert resolving reverts the proposal
        applied for it when it asked ``revert_on_resolve`` (``alerts.proposal_apply``)."""
        self.store = store
        self.clock = clock or SystemClock()
        self.webhook_url = webhook_url
        self.smtp_url = smtp_url
        self.external_url = external_url
        self._defaults = default_config()  # parsed once: the shipped route and inhibit rules
        self.proposals = (
            Proposals(store, guard_rules, guard_app, clock=self.clock) if guard_rules is not None else None
        )
        self.evaluator = Evaluator(
            store, metrics, clock=self.clock, nodes=nodes,
            on_transition=self._on_transition if self.proposals is not None else None,
        )
        self.dispatcher = Dispatcher(store, external_url=external_url)
        self.deliverer = Deliverer(
            store,
            lambda: self.config().channels,
            clock=self.clock,
            senders=senders,
            max_attempts=max_attempts,
            env=settings_refs(webhook_url, smtp_url),
            lease=lease,
        )

    def config(self) -> ActiveConfig:
        return load_active_config(
            self.store, webhook_url=self.webhook_url, smtp_url=self.smtp_url, defaults=self._defaults
        )

    def _on_transition(self, t: Transition) -> None:
        if t.kind == RESOLVED and self.proposals is not None:
            self.proposals.on_resolved(t.record)

    # ------------------------------------------------------------ jobs
    def evaluate(self) -> CycleReport:
        return self.evaluator.evaluate()

    def dispatch(self, cfg: ActiveConfig | None = None) -> list[int]:
        cfg = cfg or self.config()
        return self.dispatcher.flush(
            self.clock.now(), route=cfg.route, policy=cfg.policy(), inhibit_rules=cfg.inhibit_rules
        )

    def escalate(self, cfg: ActiveConfig | None = None) -> list[int]:
        """Notify the next step of the escalation policy for every firing alert nobody
        acknowledged within the step's wait (silenced and inhibited alerts do not escalate)."""
        cfg = cfg or self.config()
        policy = cfg.policy()
        if len(policy.steps) < 2:
            return []
        now = self.clock.now()
        firing = [a for a in self.store.open_alerts() if a.state == FIRING]
        mute = muting(firing, self.store.silences(active_at=now), cfg.inhibit_rules, now)
        queued: list[int] = []
        with self.store.begin() as conn:
            for a in firing:
                if a.acknowledged_by or mute.muted(a.id):
                    continue
                step_i = next_escalations(a, policy, now)
                if step_i is None:
                    continue
                queued += queue_escalation(
                    self.store, cfg, a, step_i, now, conn, external_url=self.external_url
                )
        return queued

    def deliver(self) -> dict[str, int]:
        started = time.perf_counter()
        counts = self.deliverer.deliver_due()
        self.store.record_status("deliver", self.clock.now(), time.perf_counter() - started, counts)
        return counts

    def cycle(self) -> dict[str, Any]:
        """One evaluation cycle: evaluate, group and queue notifications, escalate. Each stage's
        failure is logged and recorded; the next stage still runs."""
        started = time.perf_counter()
        out: dict[str, Any] = {}
        try:
            out["evaluate"] = self.evaluate().as_dict()
        except Exception as exc:
            log.exception("alert evaluation failed")
            out["evaluate"] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            cfg = self.config()
            out["notifications"] = len(self.dispatch(cfg))
            out["escalations"] = len(self.escalate(cfg))
        except Exception as exc:
            log.exception("alert dispatch failed")
            out["dispatch_error"] = f"{type(exc).__name__}: {exc}"
        duration = time.perf_counter() - started
        out["duration_s"] = round(duration, 4)
        self.store.record_status("evaluate", self.clock.now(), duration, out)
        return out

    def poll_breakers(self) -> dict[str, Any]:
        """Evaluate only the breaker rules (cheap; the worker runs it every ~2 s) and dispatch."""
        report = self.evaluator.evaluate(only=lambda r: r.on_breaker_state is not None)
        if report.transitions:
            self.dispatch()
        return report.as_dict()

    def on_breaker_event(self, event: Any, labels: Mapping[str, str] | None = None) -> None:
        """Subscribe this to ``guardians.Engine.add_breaker_listener`` in-process."""
        try:
            if self.evaluator.on_breaker_event(event, labels):
                self.dispatch()
        except Exception:
            log.exception("handling breaker event %r failed", event)
