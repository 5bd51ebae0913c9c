"""The per-alert state machine: inactive → pending → firing → resolved.

One alert per fingerprint (hash of its label set) is open at a time. Each
evaluation of a rule hands :meth:`AlertStates.apply` the series whose condition
holds; every open alert of the rule not among them is "false" this cycle.

- inactive → pending when the condition first holds (→ firing at once when ``for`` is 0);
- pending → firing once the condition has held for ``for``;
- pending → inactive ("cleared": the row stays, state ``inactive``) as soon as the condition
  stops holding before ``for`` elapsed;
- firing → resolved when the condition has not held for ``keep_firing_for`` (also when a breaker
  event ends it: the alert is held, so one incident stays one alert with its acknowledgement);
- a resolved alert that fires again is a new alert (new id, same fingerprint).

No data and query errors follow the rule's policy: ``alerting`` (every open alert
of the rule holds; with none open, one alert with the rule's labels and
``reason=no_data|error`` is raised), ``normal`` (nothing holds) or ``keep_last``
(nothing changes this cycle).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.model import FIRING, INACTIVE, PENDING, RESOLVED, AlertRule, fingerprint
from alerts.store import AlertRecord

# Alerts raised by a breaker event are not resolved by a query that has not seen the event yet.
EVENT_GRACE = timedelta(seconds=15)


@dataclass(frozen=True)
class Transition:
    kind: str  # pending | firing | resolved | cleared | updated
    record: AlertRecord
    new: bool = False  # the record has no row yet
    detail: str | None = None


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]  # the alert's full label set
    value: float | None


class AlertStates:
    """Open alerts by fingerprint, and the transitions each evaluation causes."""

    def __init__(self, open_alerts: Iterable[AlertRecord] = ()) -> None:
        self.open: dict[str, AlertRecord] = {a.fingerprint: a for a in open_alerts if a.open}
        self._event_raised: dict[str, datetime] = {}

    def of_rule(self, rule: str) -> list[AlertRecord]:
        return [a for a in self.open.values() if a.rule == rule]

    def apply(
        self,
        rule: AlertRule,
        holding: Iterable[Series],
        now: datetime,
        *,
        policy: str | None = None,
        reason: str | None = None,
    ) -> list[Transition]:
        """One evaluation of ``rule``. ``policy`` is set when the query gave no data or failed."""
        if policy == "keep_last":
            return []
        holding_by_fp: dict[str, Series] = {}
        if policy == "alerting":
            mine = self.of_rule(rule.name)
            if mine:
                for a in mine:
                    holding_by_fp[a.fingerprint] = Series(a.labels, a.value)
            else:
                labels = {**rule.base_labels(), "reason": reason or "no_data"}
                holding_by_fp[fingerprint(labels)] = Series(labels, None)
        elif policy is None:
            for s in holding:
                holding_by_fp[fingerprint(s.labels)] = s
        out: list[Transition] = []
        for fp, s in holding_by_fp.items():
            out.extend(self._holds(rule, fp, s, now, reason if policy else None))
        for a in self.of_rule(rule.name):
            if a.fingerprint not in holding_by_fp:
                out.extend(self._not_holding(rule, a, now))
        return out

    def _holds(
        self, rule: AlertRule, fp: str, s: Series, now: datetime, reason: str | None
    ) -> list[Transition]:
        a = self.open.get(fp)
        if a is None:
            labels = {k: str(v) for k, v in s.labels.items()}
            a = AlertRecord(
                id=0,
                fingerprint=fp,
                rule=rule.name,
                labels=labels,
                annotations=rule.render_annotations(labels, s.value),
                severity=rule.severity,
                state=PENDING,
                active_since=now,
                value=s.value,
                last_true_at=now,
            )
            self.open[fp] = a
            if rule.for_ <= timedelta(0):
                a.state, a.fired_at = FIRING, now
                return [Transition(FIRING, a, new=True, detail=reason)]
            return [Transition(PENDING, a, new=True, detail=reason)]
        a.value = s.value if s.value is not None else a.value
        a.last_true_at = now
        a.annotations = rule.render_annotations(a.labels, a.value)
        if a.state == PENDING and now - a.active_since >= rule.for_:
            a.state, a.fired_at = FIRING, now
            return [Transition(FIRING, a)]
        return [Transition("updated", a)]

    def _not_holding(self, rule: AlertRule, a: AlertRecord, now: datetime) -> list[Transition]:
        if a.state == PENDING:
            a.state, a.resolved_at = INACTIVE, now
            del self.open[a.fingerprint]
            return [Transition("cleared", a)]
        keep = rule.keep_firing_for
        raised = self._event_raised.get(a.fingerprint)
        if raised is not None and now - raised < EVENT_GRACE:
            keep = max(keep, EVENT_GRACE)
        if a.last_true_at is not None and now - a.last_true_at < keep:
            return []
        a.state, a.resolved_at = RESOLVED, now
        del self.open[a.fingerprint]
        self._event_raised.pop(a.fingerprint, None)
        return [Transition(RESOLVED, a)]

    def raise_now(
        self, rule: AlertRule, labels: Mapping[str, str], now: datetime, value: float | None, detail: str
    ) -> list[Transition]:
        """Fire at once, skipping ``for`` (breaker-open events)."""
        fp = fingerprint(labels)
        self._event_raised[fp] = now
        a = self.open.get(fp)
        if a is not None and a.state == FIRING:
            a.last_true_at = now
            return []
        if a is not None:  # pending → firing now
            a.state, a.fired_at, a.last_true_at = FIRING, now, now
            return [Transition(FIRING, a, detail=detail)]
        a = AlertRecord(
            id=0,
            fingerprint=fp,
            rule=rule.name,
            labels=dict(labels),
            annotations=rule.render_annotations(labels, value),
            severity=rule.severity,
            state=FIRING,
            active_since=now,
            fired_at=now,
            value=value,
            last_true_at=now,
        )
        self.open[fp] = a
        return [Transition(FIRING, a, new=True, detail=detail)]

    def resolve_now(
        self, labels: Mapping[str, str], now: datetime, detail: str, *, keep: timedelta = timedelta(0)
    ) -> list[Transition]:
        """The condition stopped (a breaker left the rule's state). With ``keep`` (the rule's
        ``keep_firing_for``) a firing alert is held: it counts as true until now and the rule's
        next evaluations resolve it only once ``keep`` has passed without the condition, so a
        breaker cycling open → half-open → open stays ONE alert, acknowledgement included."""
        fp = fingerprint(labels)
        held = self.open.get(fp)
        if held is not None and held.state == FIRING and keep > timedelta(0):
            held.last_true_at = now
            return []
        a = self.open.pop(fp, None)
        self._event_raised.pop(fp, None)
        if a is None:
            return []
        if a.state == PENDING:
            a.state, a.resolved_at = INACTIVE, now
            return [Transition("cleared", a, detail=detail)]
        a.state, a.resolved_at = RESOLVED, now
        return [Transition(RESOLVED, a, detail=detail)]

    def drop_rules_except(self, names: set[str], now: datetime) -> list[Transition]:
        """Resolve the open alerts of rules that were removed or disabled."""
        out = []
        for a in list(self.open.values()):
            if a.rule not in names:
                out.extend(self.resolve_now(a.labels, now, "rule removed or disabled"))
        return out

    def sync(self, stored_open: Iterable[AlertRecord]) -> None:
        """Align with the control DB: alerts resolved by a person elsewhere are dropped, and
        acknowledgements made by another process are taken over."""
        stored = {a.fingerprint: a for a in stored_open if a.open}
        for fp in list(self.open):
            if fp not in stored or stored[fp].id != self.open[fp].id:
                self.forget(fp)
        for fp, a in stored.items():
            mine = self.open.get(fp)
            if mine is None:
                self.open[fp] = a
            else:
                mine.acknowledged_by, mine.acknowledged_at = a.acknowledged_by, a.acknowledged_at
                mine.escalation_step, mine.escalated_at = a.escalation_step, a.escalated_at

    def forget(self, fp: str) -> None:
        """A person resolved the alert by hand: it is no longer open here."""
        self.open.pop(fp, None)
        self._event_raised.pop(fp, None)
