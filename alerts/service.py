"""The alerting application service: plain data in, plain data out.

The console's Alerts page and the CLI call these methods; they never touch the
tables. Times are ISO 8601 strings in the results; every "by" is the person acting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from alerts.dispatch import muting
from alerts.engine import load_active_config
from alerts.errors import AlertConfigError, InvalidAction, NotFound
from alerts.model import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    STATES,
    AlertConfig,
    Matcher,
    Member,
    Override,
    Rotation,
    Silence,
)
from alerts.proposal_apply import GuardRulesPort, Proposals
from alerts.rule_versions import AlertRuleVersions
from alerts.rulefile import config_to_dict, dump_yaml, load_text, parse_document, parse_rule, rule_to_dict
from alerts.store import AlertRecord, AlertStore
from common.clock import Clock, SystemClock
from common.durations import parse_duration
from common.identity import Principal, require

log = logging.getLogger(__name__)


def silence_to_dict(s: Silence, now: datetime) -> dict[str, Any]:
    if s.expired_by is not None or now >= s.ends_at:
        status = "expired"
    elif now < s.starts_at:
        status = "pending"
    else:
        status = "active"
    return {
        "id": s.id,
        "matchers": [str(m) for m in s.matchers],
        "starts_at": s.starts_at.isoformat(),
        "ends_at": s.ends_at.isoformat(),
        "created_by": s.created_by,
        "comment": s.comment,
        "expired_by": s.expired_by,
        "status": status,
    }


class AlertService:
    """Use cases of the Alerts page and the ``tradeguard alerts`` CLI."""

    def __init__(
        self,
        store: AlertStore,
        *,
        clock: Clock | None = None,
        metrics: Any = None,
        webhook_url: str | None = None,
        smtp_url: str | None = None,
        external_url: str = "http://127.0.0.1:8501",
        guard_rules: GuardRulesPort | None = None,
        guard_app: str = "",
    ) -> None:
        """``guard_rules`` (``guardians.store.RuleStore``) and ``guard_app``: where an alert's proposal
        is applied and reverted (``alerts.proposal_apply``); without them proposals are refused."""
        self.store = store
        self.external_url = external_url
        self.clock = clock or SystemClock()
        self.metrics = metrics  # optional collectors MetricStore, for metric_behind()
        self.webhook_url = webhook_url
        self.smtp_url = smtp_url
        self.versions = AlertRuleVersions(store, clock=self.clock)  # every rule change is a version
        self.proposals = (
            Proposals(store, guard_rules, guard_app, clock=self.clock) if guard_rules is not None else None
        )

    # ------------------------------------------------------------ alerts
    def list_alerts(
        self, states: Sequence[str] = (FIRING, PENDING), *, acknowledged: bool | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Alerts in ``states`` (firing, pending, resolved, inactive), newest first, each with
        ``acknowledged``, ``silenced_by`` (silence ids), ``inhibited`` and ``inhibited_by`` (the firing
        alert muting it: ``{"id", "rule"}``, or None)."""
        for s in states:
            if s not in STATES:
                raise ValueError(f"state must be one of {', '.join(STATES)}, got {s!r}")
        now = self.clock.now()
        recs = self.store.alerts(states, limit=limit)
        if acknowledged is not None:
            recs = [a for a in recs if bool(a.acknowledged_by) == acknowledged]
        mute = self._muting(now)
        return [self._alert_dict(a, mute) for a in recs]

    def _muting(self, now: datetime) -> Any:
        """Which firing alerts are silenced (by which silences) or inhibited (by which cause) now."""
        firing = [a for a in self.store.open_alerts() if a.state == FIRING]
        cfg = load_active_config(self.store)
        return muting(firing, self.store.silences(active_at=now), cfg.inhibit_rules, now)

    @staticmethod
    def _alert_dict(a: AlertRecord, mute: Any = None) -> dict[str, Any]:
        d = a.to_dict()
        d["acknowledged"] = bool(a.acknowledged_by)
        d["silenced_by"] = list(mute.silenced.get(a.id, [])) if mute else []
        cause = mute.inhibited.get(a.id) if mute else None
        d["inhibited"] = cause is not None
        d["inhibited_by"] = {"id": cause.id, "rule": cause.rule} if cause is not None else None
        d["summary"] = a.annotations.get("summary", "")
        return d

    def get_alert(self, alert_id: int) -> dict[str, Any]:
        """One alert as ``list_alerts`` shows it (silenced, inhibited and by what)."""
        return self._alert_dict(self.store.get_alert(alert_id), self._muting(self.clock.now()))

    def timeline(self, alert_id: int) -> dict[str, Any]:
        """The alert, its events (pending, firing, acknowledged, notified, escalated, resolved …)
        in time order, and the notifications sent about it with their delivery attempts."""
        alert = self.store.get_alert(alert_id)
        notes = []
        for n in self.store.notifications(alert_id=alert_id, limit=1000):
            notes.append(
                {
                    "id": n["id"],
                    "created_at": n["created_at"].isoformat(),
                    "channel": n["channel"],
                    "reason": n["reason"],
                    "status": n["status"],
                    "attempts": n["attempts"],
                    "last_error": n["last_error"],
                    "sent_at": n["sent_at"].isoformat() if n["sent_at"] else None,
                }
            )
        return {
            "alert": self._alert_dict(alert, self._muting(self.clock.now())),  # handled as the board shows it
            "events": self.store.events(alert_id),
            "notifications": notes,
        }

    def metric_behind(self, alert_id: int, *, minutes: int = 30, bucket_s: int = 10) -> dict[str, Any]:
        """The rule's value over the last ``minutes`` for the alert's series, for a chart:
        ``{"rule", "threshold", "op", "window_s", "points": [{"time", "value"}]}`` (empty points
        without a store). A rule whose aggregate composes (sum, count, max, min, last) over a window
        of whole buckets is drawn as the evaluator computes it: each point is the value over the
        rule's window ending there, so the line meets the alert's value and threshold (a ratio over
        1 min, not each 10 s bucket's ratio, whose running bucket may hold one failed charge). Other
        rules (percentiles, growth) are drawn per bucket (``window_s`` = ``bucket_s``)."""
        from alerts.evaluator import rule_series
        from alerts.rulefile import parse_rule
        from collectors.query import Query, Row

        alert = self.store.get_alert(alert_id)
        docs = {d["name"]: d for d in self.store.rule_documents()}
        if alert.rule not in docs:
            return {"rule": alert.rule, "threshold": None, "op": None, "window_s": None, "points": []}
        rule = parse_rule(docs[alert.rule])
        out: dict[str, Any] = {
            "rule": rule.name, "threshold": rule.threshold, "op": rule.op, "window_s": bucket_s, "points": []
        }
        if self.metrics is None or rule.query is None:
            return out
        q = rule.query
        window_s = int(q.window.total_seconds())
        rolling = (
            q.function == "value"
            and q.aggregate in ("sum", "count", "max", "min", "last")
            and window_s >= bucket_s
            and window_s % bucket_s == 0
        )
        n = window_s // bucket_s if rolling else 1
        now = self.clock.now()
        start = now - timedelta(minutes=minutes)
        rows = self.metrics.query(
            Query(
                q.measurement,
                q.fields(),
                start - timedelta(seconds=bucket_s * (n - 1)),  # the first point's window is whole
                now,
                q.aggregate,  # type: ignore[arg-type]
                bucket_s,
                dict(q.where),
                tuple(q.group_by),
            )
        )
        if rolling:
            out["window_s"] = window_s
            rows = _rolled(rows, q.aggregate, bucket_s, n, start, now, Row)
        by_time: dict[datetime, list] = {}
        for r in rows:
            by_time.setdefault(r.time, []).append(r)
        points = []
        plain = replace(rule, query=replace(q, function="value"))
        for t in sorted(by_time):
            for s in rule_series(plain, by_time[t]):
                if all(alert.labels.get(k) == v for k, v in s.labels.items() if k in q.group_by):
                    points.append({"time": t.isoformat(), "value": s.value})
        out["points"] = points
        return out

    def _expected(self, alert_id: int, expected_state: str | None) -> AlertRecord:
        """The alert, refused when it is gone or is no longer in ``expected_state`` (the state the
        person saw when they chose the action): an action must never land on a changed alert."""
        try:
            a = self.store.get_alert(alert_id)
        except NotFound as exc:
            if expected_state is None:
                raise
            raise NotFound(f"Alert #{alert_id} no longer exists; nothing was done") from exc
        if expected_state is None or a.state == expected_state:
            return a
        if a.open:
            raise InvalidAction(
                f"Alert #{a.id} {a.rule} changed from {expected_state} to {a.state} since you opened it; "
                "review and try again"
            )
        gone = "cleared" if a.state == INACTIVE else a.state
        raise InvalidAction(
            f"Alert #{a.id} {a.rule} was {gone} since you opened it (it was {expected_state}); "
            "nothing was done"
        )

    def acknowledge(
        self, alert_id: int, by: str, comment: str | None = None, *, expected_state: str | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Stops escalation and repeat notifications of an open alert. With ``expected_state``, refuses
        (``InvalidAction``/``NotFound``) when the alert is no longer in that state. With ``principal``,
        refused unless its role may acknowledge, and recorded as the principal (``by`` is ignored)."""
        by = _acting(principal, "alerts.ack", by)
        a = self._expected(alert_id, expected_state)
        if not a.open:
            raise InvalidAction(
                f"alert {alert_id} is {a.state}; only pending or firing alerts can be acknowledged"
            )
        _need_name(by)
        now = self.clock.now()
        a.acknowledged_by, a.acknowledged_at = by, now
        self.store.update_alert(a, columns=("acknowledged_by", "acknowledged_at"))
        self.store.add_event(alert_id, now, "acknowledged", by=by, detail=comment)
        self._pagerduty(a, "acknowledge", now)
        log.info("alert %s acknowledged by %s", alert_id, by)
        return self.get_alert(alert_id)

    def unacknowledge(self, alert_id: int, by: str, *, expected_state: str | None = None,
                      principal: Principal | None = None) -> dict[str, Any]:
        by = _acting(principal, "alerts.ack", by)
        a = self._expected(alert_id, expected_state)
        if not a.acknowledged_by:
            raise InvalidAction(f"alert {alert_id} is not acknowledged")
        _need_name(by)
        now = self.clock.now()
        a.acknowledged_by, a.acknowledged_at = None, None
        # escalation starts over from now
        a.escalated_at = now if a.fired_at else None
        self.store.update_alert(a, columns=("acknowledged_by", "acknowledged_at", "escalated_at"))
        self.store.add_event(alert_id, now, "unacknowledged", by=by)
        return self.get_alert(alert_id)

    def resolve(
        self, alert_id: int, by: str, comment: str | None = None, *, expected_state: str | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Close an open alert by hand. If its condition still holds, the next evaluation opens a new one."""
        by = _acting(principal, "alerts.resolve", by)
        a = self._expected(alert_id, expected_state)
        if not a.open:
            raise InvalidAction(f"alert {alert_id} is already {a.state}")
        _need_name(by)
        now = self.clock.now()
        a.state, a.resolved_at, a.resolved_by = RESOLVED, now, by
        self.store.update_alert(a, columns=("state", "resolved_at", "resolved_by"))
        self.store.add_event(alert_id, now, "resolved", by=by, detail=comment or "resolved by hand")
        self._pagerduty(a, "resolve", now)
        log.info("alert %s resolved by %s", alert_id, by)
        if self.proposals is not None:
            self.proposals.on_resolved(a, by)  # revert_on_resolve: restore the rules it replaced
        return self.get_alert(alert_id)

    # ------------------------------------------------------------ proposals
    def _proposals(self) -> Proposals:
        if self.proposals is None:
            raise InvalidAction(
                "no guardian rule store is wired to the alert service: proposals cannot be applied here "
                "(start the console or worker with `tradeguard`, which passes it)"
            )
        return self.proposals

    def proposal_plan(self, alert_id: int) -> dict[str, Any]:
        """The alert's proposal, the guardian rules in force (``rules_version``, ``current``) and the
        document it makes of them (``proposed``; None with ``error`` when invalid), plus ``applied``
        (the last application and its revert, or None). ``ProposalError`` when the rule has none."""
        p = self._proposals()
        out = p.plan(alert_id).to_dict()
        out["applied"] = p.applied(alert_id)
        return out

    def apply_proposal(
        self,
        alert_id: int,
        by: str | None = None,
        *,
        expected_rules_version: int | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Apply the alert's proposed guardian rule change (``alerts.proposal_apply.Proposals.apply``):
        refused (``Forbidden``, ``ProposalError``, ``InvalidAction``) with a message naming the field."""
        return self._proposals().apply(
            alert_id, by, expected_rules_version=expected_rules_version, principal=principal
        )

    def silence_alert(
        self,
        alert_id: int,
        *,
        created_by: str,
        comment: str,
        duration: str | timedelta,
        expected_state: str | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Silence exactly this alert (a silence matching every label of it) for ``duration``."""
        created_by = _acting(principal, "alerts.silence", created_by)
        a = self._expected(alert_id, expected_state)
        if not a.open:
            raise InvalidAction(f"Alert #{a.id} {a.rule} is {a.state}; only open alerts can be silenced")
        matchers = [Matcher(k, v) for k, v in sorted(a.labels.items())]
        s = self.create_silence(matchers, created_by=created_by, comment=comment, duration=duration)
        self.store.add_event(alert_id, self.clock.now(), "silenced", by=created_by, detail=comment)
        return s

    def escalate(self, alert_id: int, by: str, to_step: int | None = None) -> dict[str, Any]:
        """Escalate a firing alert by hand now: notify escalation step ``to_step`` (1-based, as the
        alert's events show it: "step 2"; default the next step) of the route's policy. The leader
        worker delivers the queued notifications; automatic escalation continues from that step."""
        from alerts.engine import queue_escalation

        _need_name(by)
        a = self.store.get_alert(alert_id)
        if a.state != FIRING:
            raise InvalidAction(f"alert {alert_id} is {a.state}; only a firing alert can be escalated")
        cfg = load_active_config(self.store, webhook_url=self.webhook_url, smtp_url=self.smtp_url)
        policy = cfg.policy()
        n = len(policy.steps)
        step_i = a.escalation_step + 1 if to_step is None else int(to_step) - 1
        if to_step is not None and not 1 <= int(to_step) <= n:
            raise AlertConfigError(
                [("to_step", f"must be a step of policy {policy.name!r}: 1 to {n}, got {to_step}")]
            )
        if step_i >= n:
            raise InvalidAction(
                f"alert {alert_id} is at step {a.escalation_step + 1} of {n}, the last of policy "
                f"{policy.name!r}: no further step to escalate to (give to_step to re-notify one)"
            )
        now = self.clock.now()
        with self.store.engine.begin() as conn:
            queued = queue_escalation(
                self.store, cfg, a, step_i, now, conn, external_url=self.external_url, by=by
            )
        out = self.get_alert(alert_id)
        out["queued_notifications"] = queued
        return out

    def _pagerduty(self, a: AlertRecord, action: str, now: datetime) -> list[int]:
        """Queue a PagerDuty ``acknowledge``/``resolve`` for an alert that fired, on every pagerduty
        channel, so PagerDuty follows what a person did in tradeguard (same ``dedup_key``)."""
        if a.fired_at is None:
            return []
        try:
            cfg = load_active_config(self.store, webhook_url=self.webhook_url, smtp_url=self.smtp_url)
        except Exception:
            log.exception("reading the channels failed: PagerDuty not told of the %s", action)
            return []
        from alerts.notify import build_payload

        queued = []
        for ch in cfg.channels.values():
            if ch.kind != "pagerduty":
                continue
            payload = build_payload(receiver=ch.name, group_key=f"pagerduty:{a.fingerprint}",
                                    group_labels={"alertname": a.labels.get("alertname", a.rule)},
                                    alerts=[a], external_url=self.external_url)
            queued.append(self.store.enqueue(channel=ch.name, reason=action, group_key=None, alert_ids=[a.id],
                                             payload=payload, extra={"event_action": action}, now=now))
        return queued

    def history(self, *, limit: int = 200, since: datetime | None = None) -> list[dict[str, Any]]:
        """Alerts that fired (open or resolved), newest first."""
        return [
            self._alert_dict(a) for a in self.store.alerts(None, limit=limit, since=since, fired_only=True)
        ]

    def notifications(self, *, limit: int = 100) -> list[dict[str, Any]]:
        out = []
        for n in self.store.notifications(limit=limit):
            out.append(
                {
                    "id": n["id"],
                    "created_at": n["created_at"].isoformat(),
                    "channel": n["channel"],
                    "reason": n["reason"],
                    "status": n["status"],
                    "attempts": n["attempts"],
                    "alert_ids": n["alert_ids"],
                    "last_error": n["last_error"],
                    "summary": _summary(n["payload"]),
                }
            )
        return out

    def deliveries(self, notification_id: int | None = None, *, limit: int = 200) -> list[dict[str, Any]]:
        """Every delivery attempt, newest first:
        ``{id, notification_id, channel, at, ok, error, duration_ms}``."""
        return [
            {**d, "at": d["at"].isoformat()}
            for d in self.store.deliveries(limit=limit, notification_id=notification_id)
        ]

    # ------------------------------------------------------------ silences
    def silences(self, *, include_expired: bool = False) -> list[dict[str, Any]]:
        now = self.clock.now()
        out = [silence_to_dict(s, now) for s in self.store.silences()]
        return out if include_expired else [s for s in out if s["status"] != "expired"]

    def create_silence(
        self,
        matchers: Iterable[str | Matcher],
        *,
        created_by: str,
        comment: str,
        duration: str | timedelta | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """``matchers`` like ``"alertname=BreakerOpen"``, ``"instance=~node-.*"``; give ``duration``
        (e.g. "1h") or ``ends_at``."""
        created_by = _acting(principal, "alerts.silence", created_by)
        ms = [m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers]
        if not ms:
            raise AlertConfigError([("matchers", "at least one matcher label=value is required")])
        _need_name(created_by, "created_by")
        if not comment or not comment.strip():
            raise AlertConfigError([("comment", "required: say why this is silenced")])
        now = self.clock.now()
        start = starts_at or now
        if ends_at is None:
            if duration is None:
                raise AlertConfigError([("duration", "give a duration (e.g. 1h) or ends_at")])
            try:
                ends_at = start + parse_duration(duration)
            except ValueError as exc:
                raise AlertConfigError([("duration", str(exc))]) from exc
        if ends_at <= start:
            raise AlertConfigError([("ends_at", "must be after the start")])
        s = self.store.add_silence(ms, start, ends_at, created_by=created_by, comment=comment, now=now)
        log.info(
            "silence %s (%s) until %s by %s", s.id, ", ".join(map(str, ms)), ends_at.isoformat(), created_by
        )
        return silence_to_dict(s, now)

    def update_silence(
        self,
        silence_id: int,
        *,
        ends_at: datetime | None = None,
        comment: str | None = None,
        matchers: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if ends_at is not None:
            values["ends_at"] = ends_at
        if comment is not None:
            values["comment"] = comment
        if matchers is not None:
            values["matchers"] = [Matcher.parse(m) for m in matchers]
        return silence_to_dict(self.store.update_silence(silence_id, **values), self.clock.now())

    def expire_silence(
        self, silence_id: int, by: str, *, principal: Principal | None = None
    ) -> dict[str, Any]:
        """End a silence now (it stays in the list as expired)."""
        by = _acting(principal, "alerts.silence", by)
        now = self.clock.now()
        s = self.store.get_silence(silence_id)
        ends = min(s.ends_at, now)
        starts = min(s.starts_at, ends)
        return silence_to_dict(
            self.store.update_silence(silence_id, ends_at=ends, starts_at=starts, expired_by=by), now
        )

    def delete_silence(self, silence_id: int) -> None:
        self.store.delete_silence(silence_id)

    # ------------------------------------------------------------ on-call
    def on_call_now(self, at: datetime | None = None) -> list[dict[str, Any]]:
        """Who is on call per rotation: ``{rotation, name, email, override, shift_start, shift_end}``."""
        now = at or self.clock.now()
        cfg = load_active_config(self.store, webhook_url=self.webhook_url, smtp_url=self.smtp_url)
        out = []
        for r in cfg.rotations.values():
            m = r.on_call(now)
            bounds = r.shift_bounds(now)
            override = next((o for o in reversed(r.overrides) if o.start <= now < o.end), None)
            out.append(
                {
                    "rotation": r.name,
                    "name": m.name if m else None,
                    "email": m.email if m else None,
                    "override": override is not None,
                    "shift_start": (override.start if override else bounds[0]).isoformat()
                    if bounds or override
                    else None,
                    "shift_end": (override.end if override else bounds[1]).isoformat()
                    if bounds or override
                    else None,
                }
            )
        return out

    def set_on_call(
        self,
        who: str,
        *,
        by: str,
        duration: str | timedelta = "8h",
        rotation: str = "primary",
        email: str | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Put ``who`` on call in ``rotation`` from now for ``duration`` (an override; ``who`` joins the
        rotation's members). A rotation that does not exist yet is created with ``who`` as its only
        member, so someone stays on call after the override ends. Returns the rotation's on-call entry."""
        by = _acting(principal, "oncall.set", by)
        _need_name(by)
        if not who or not who.strip():
            raise AlertConfigError([("who", "required: the name of who goes on call")])
        if not rotation or not rotation.strip():
            raise AlertConfigError([("rotation", "required: a rotation name (e.g. primary)")])
        try:
            span = parse_duration(duration)
        except ValueError as exc:
            raise AlertConfigError([("duration", str(exc))]) from exc
        who, rotation = who.strip(), rotation.strip()
        now = self.clock.now()
        rotations = dict(load_active_config(self.store).rotations)
        override = Override(who, now, now + span)
        current = rotations.get(rotation)
        if current is None:
            member = Member(who, email or None)
            rotations[rotation] = Rotation(rotation, (member,), now, overrides=(override,))
        else:
            members = current.members
            if not any(m.name == who for m in members):
                members = (*members, Member(who, email or None))
            kept = tuple(o for o in current.overrides if o.end > now)
            rotations[rotation] = replace(current, members=members, overrides=(*kept, override))
        doc = config_to_dict(AlertConfig(rotations=tuple(rotations.values())))["rotations"]
        parse_document({"rotations": doc})  # raises AlertConfigError naming the field
        self.store.set_config_section("rotations", doc, by=by, now=now)
        log.info("%s put %s on call in rotation %s until %s", by, who, rotation, override.end.isoformat())
        return next(o for o in self.on_call_now(now) if o["rotation"] == rotation)

    # ------------------------------------------------------------ rules and config
    def rules(self) -> list[dict[str, Any]]:
        """Every rule as its document (the YAML fields), plus open alert counts."""
        counts: dict[str, dict[str, int]] = {}
        for a in self.store.open_alerts():
            counts.setdefault(a.rule, {FIRING: 0, PENDING: 0})[a.state] += 1
        out = []
        for doc in self.store.rule_documents():
            d = dict(doc)
            d.setdefault("enabled", True)
            d["open"] = counts.get(doc["name"], {FIRING: 0, PENDING: 0})
            out.append(d)
        return out

    def config(self) -> dict[str, Any]:
        """The configuration sections in force (route, inhibit rules, channels, policies, rotations)."""
        cfg = load_active_config(self.store, webhook_url=self.webhook_url, smtp_url=self.smtp_url)
        from alerts.model import AlertConfig

        return config_to_dict(
            AlertConfig(
                None,
                cfg.inhibit_rules,
                cfg.route,
                tuple(cfg.channels.values()),
                tuple(cfg.policies.values()),
                tuple(cfg.rotations.values()),
            )
        )

    def validate(self, text: str) -> list[dict[str, str]]:
        """Errors of an alert document (YAML or JSON) as ``[{"field", "message"}]``; empty when valid."""
        try:
            load_text(text)
        except AlertConfigError as exc:
            return [{"field": p, "message": m} for p, m in exc.errors]
        return []

    def apply(
        self, document: str | Mapping[str, Any], *, by: str, prune: bool = False, why: str = ""
    ) -> dict[str, Any]:
        """Apply an alert document (YAML/JSON text or a mapping): rules are upserted by name (with
        ``prune``, rules absent from the document are deleted); other sections replace the stored
        ones. Raises ``AlertConfigError`` (nothing applied) when anything is invalid. A change of the
        rules is recorded as a new version (``alerts.rule_versions``: by, why, diff);
        ``result["version"]`` is the version in force."""
        _need_name(by)
        cfg = load_text(document) if isinstance(document, str) else parse_document(document)
        now = self.clock.now()
        result: dict[str, Any] = {"rules": {"added": [], "changed": [], "unchanged": [], "removed": []}}
        if cfg.rules is not None:
            result["rules"] = self.store.replace_rules(
                [rule_to_dict(r) for r in cfg.rules], by=by, now=now, prune=prune
            )
            result["version"] = self.versions.record(by=by, why=why or "alert document applied")
        sections = config_to_dict(cfg)
        sections.pop("rules", None)
        for name, doc in sections.items():
            self.store.set_config_section(name, doc, by=by, now=now)
        result["sections"] = sorted(sections)
        log.info("alert document applied by %s: %s", by, result)
        return result

    def set_rule_enabled(self, name: str, enabled: bool, *, by: str, why: str = "") -> dict[str, Any]:
        docs = {d["name"]: d for d in self.store.rule_documents()}
        if name not in docs:
            raise NotFound(f"no alert rule named {name!r}")
        doc = dict(docs[name])
        if enabled:
            doc.pop("enabled", None)
        else:
            doc["enabled"] = False
        self.store.replace_rules([doc], by=by, now=self.clock.now())
        self.versions.record(by=by, why=why or f"rule {name} {'enabled' if enabled else 'disabled'}")
        return doc

    def delete_rule(self, name: str, *, by: str = "unknown", why: str = "") -> None:
        self.store.delete_rule(name)
        self.versions.record(by=by, why=why or f"rule {name} deleted")

    def export(self) -> str:
        """Rules and configuration sections as one YAML document (re-applicable)."""
        text = dump_yaml(parse_document({"rules": self.store.rule_documents()}))
        sections = self.store.config_sections()
        if sections:
            text += dump_yaml(parse_document(sections))
        return text

    # ------------------------------------------------------------ rule versions, back-test
    def rule_history(self, *, limit: int = 200) -> list[dict[str, Any]]:
        """Versions of the alert rules, newest first: ``{version, created_by, created_at, why, diff,
        restored_from, rules, document}``."""
        return [v.to_dict() for v in self.versions.history(limit)]

    def rollback_rules(self, version: int, *, by: str, why: str = "") -> dict[str, Any]:
        """Restore the rules of ``version`` as a new version; returns that version's dict."""
        _need_name(by)
        n = self.versions.rollback(version, by, why)
        return self.versions.version(n).to_dict()

    def backtest(
        self,
        rule: Mapping[str, Any],
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        interval_s: int = 10,
        with_series: bool = True,
    ) -> dict[str, Any]:
        """Replay ``[start, end]`` (default: the last 24 h) of recorded metrics through ``rule`` (a rule
        document, validated like the YAML import) and through the rule of that name in force:
        ``{"start", "end", "interval_s", "steps", "queries", "duration_s", "proposed", "current"}``, each
        rule's result with its transitions, pending/firing intervals and metric series
        (``alerts.backtest``). Raises ``AlertConfigError`` naming the field of an invalid rule."""
        from alerts.backtest import backtest

        proposed = parse_rule(dict(rule), "rule")
        if self.metrics is None:
            raise InvalidAction("no metric store is configured: nothing to back-test against")
        end = end or self.clock.now()
        start = start or end - timedelta(hours=24)
        current_doc = {d["name"]: d for d in self.store.rule_documents()}.get(proposed.name)
        new = backtest([proposed], self.metrics, start, end, interval_s=interval_s, with_series=with_series)
        out: dict[str, Any] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "interval_s": new.interval_s,
            "steps": new.steps,
            "queries": new.queries,
            "duration_s": round(new.duration_s, 4),
            "proposed": new.rules[proposed.name].to_dict(end),
            "current": None,
        }
        if current_doc is not None:
            cur_rule = parse_rule(current_doc, "current rule")
            cur = backtest(
                [cur_rule], self.metrics, start, end, interval_s=interval_s, with_series=with_series
            )
            out["current"] = cur.rules[cur_rule.name].to_dict(end)
            out["current"]["enabled"] = cur_rule.enabled
            out["queries"] += cur.queries
            out["duration_s"] = round(new.duration_s + cur.duration_s, 4)
        return out

    def close(self) -> None:
        self.store.close()


def _acting(principal: Principal | None, action: str, by: str) -> str:
    """Who acts: with a ``principal``, refused (``Forbidden``) unless its role may do ``action``, and
    then always the principal's name; without one, ``by`` as given (trusted callers: CLI, worker)."""
    if principal is None:
        return by
    require(principal, action)
    return principal.name


def _need_name(by: str, field: str = "by") -> None:
    if not by or not str(by).strip():
        raise AlertConfigError([(field, "required: who is acting (a name)")])


def _summary(payload: Mapping[str, Any]) -> str:
    from alerts.notify import summary_line

    try:
        return summary_line(payload)
    except Exception:
        return ""



def _rolled(rows: Sequence[Any], aggregate: str, bucket_s: int, n: int, start: datetime, now: datetime,
            row: Any) -> list[Any]:
    """Per series, the ``n`` buckets ending at each bucket's end combined into one row at that end
    (the running bucket's end is ``now``): the window the evaluator reads at that instant."""
    series: dict[tuple, dict[datetime, Any]] = {}
    for r in rows:
        series.setdefault(tuple(sorted(r.tags.items())), {})[r.time] = r
    step = timedelta(seconds=bucket_s)
    times = sorted({r.time for r in rows})
    out = []
    for key, by_time in series.items():
        for t in times:  # also a bucket this series has nothing in: its window may still hold data
            end = min(t + step, now)
            window = [by_time[b] for k in range(n) if (b := t - k * step) in by_time]
            if end < start or not window:
                continue
            values: dict[str, float | None] = {}
            for name in window[0].values:
                got = [w.values.get(name) for w in window if w.values.get(name) is not None]
                if not got:
                    values[name] = None
                elif aggregate in ("sum", "count"):
                    values[name] = float(sum(got))
                elif aggregate == "max":
                    values[name] = float(max(got))
                elif aggregate == "min":
                    values[name] = float(min(got))
                else:  # last: the newest bucket holding it
                    values[name] = float(got[0])
            out.append(row(end, dict(key), values))
    return out
