"""From firing alerts to queued notifications: silences, inhibition, groups and their timers.

Alertmanager's semantics, one route level:
- alerts are grouped by the route's ``group_by`` labels (one group per label values);
- a new group waits ``group_wait`` before its first notification (to batch a burst);
- afterwards a group is re-examined every ``group_interval``: it notifies when its
  alerts changed (a new alert fired, one resolved);
- unchanged, it notifies again after ``repeat_interval`` while some alert in it is
  firing and not acknowledged;
- silenced and inhibited alerts are left out; a resolved alert is sent once as
  resolved and then leaves the group (dedup: an unchanged group is never re-sent early).

Notifications go to the channels of the first step of the route's receiver (an
escalation policy); later steps are the escalator's job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.model import FIRING, EscalationPolicy, InhibitRule, Route, Silence, matches_all
from alerts.notify import build_payload
from alerts.store import AlertRecord, AlertStore

log = logging.getLogger(__name__)


def silenced_by(labels: Mapping[str, str], silences: Sequence[Silence], now: datetime) -> list[int]:
    return [s.id for s in silences if s.id is not None and s.silences(labels, now)]


def inhibitor(
    alert: AlertRecord, firing: Sequence[AlertRecord], rules: Sequence[InhibitRule]
) -> AlertRecord | None:
    """The firing alert (matching an inhibit rule's source) that mutes ``alert``, or None: the page
    names the cause, not only that a cause exists."""
    for rule in rules:
        if not matches_all(rule.target, alert.labels):
            continue
        for src in firing:
            if src.id == alert.id or not matches_all(rule.source, src.labels):
                continue
            if all(src.labels.get(k, "") == alert.labels.get(k, "") for k in rule.equal):
                return src
    return None


def inhibited(alert: AlertRecord, firing: Sequence[AlertRecord], rules: Sequence[InhibitRule]) -> bool:
    """True when a firing alert matching an inhibit rule's source mutes ``alert``."""
    return inhibitor(alert, firing, rules) is not None


def group_labels(labels: Mapping[str, str], route: Route) -> dict[str, str]:
    return {k: labels.get(k, "") for k in route.group_by}


def group_key(receiver: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{{}}:{{{inner}}}" if receiver == "" else f"{receiver}:{{{inner}}}"


@dataclass(frozen=True)
class Muting:
    silenced: dict[int, list[int]]  # alert id → silence ids
    inhibited: dict[int, AlertRecord]  # alert id → the firing alert muting it (its cause)

    def muted(self, alert_id: int) -> bool:
        return bool(self.silenced.get(alert_id)) or alert_id in self.inhibited


def muting(
    firing: Sequence[AlertRecord],
    silences: Sequence[Silence],
    inhibit_rules: Sequence[InhibitRule],
    now: datetime,
) -> Muting:
    sil = {a.id: ids for a in firing if (ids := silenced_by(a.labels, silences, now))}
    inh = {a.id: src for a in firing if (src := inhibitor(a, firing, inhibit_rules)) is not None}
    return Muting(sil, inh)


class Dispatcher:
    def __init__(self, store: AlertStore, *, external_url: str = "http://127.0.0.1:8501") -> None:
        self.store = store
        self.external_url = external_url

    def flush(
        self, now: datetime, *, route: Route, policy: EscalationPolicy, inhibit_rules: Sequence[InhibitRule]
    ) -> list[int]:
        """Queue the notifications due now; return their ids."""
        open_alerts = self.store.open_alerts()
        firing = [a for a in open_alerts if a.state == FIRING]
        mute = muting(firing, self.store.silences(active_at=now), inhibit_rules, now)
        candidates = [a for a in firing if not mute.muted(a.id)]
        groups = self.store.groups()
        # resolved alerts the groups last announced as firing
        announced: set[int] = set()
        for g in groups.values():
            announced.update(int(i) for i, st in g["sent"].items() if st == FIRING)
        members: dict[str, list[AlertRecord]] = {}
        labels_of: dict[str, dict[str, str]] = {}
        for a in candidates:
            gl = group_labels(a.labels, route)
            key = group_key(route.receiver, gl)
            members.setdefault(key, []).append(a)
            labels_of[key] = gl
        candidate_ids = {a.id for a in candidates}
        gone = [i for i in announced if i not in candidate_ids]
        for a in self.store.get_alerts(gone):
            if a.state == FIRING:  # still firing but silenced or inhibited now: it leaves the group quietly
                continue
            gl = group_labels(a.labels, route)
            key = group_key(route.receiver, gl)
            if key in groups:
                members.setdefault(key, []).append(a)
                labels_of[key] = gl
        queued: list[int] = []
        steps = policy.steps[0].channels if policy.steps else ()
        with self.store.begin() as conn:
            for key in set(members) | set(groups):
                alerts = sorted(members.get(key, []), key=lambda a: a.id)
                g = groups.get(key)
                if g is None:
                    if not alerts:
                        continue
                    g = {
                        "group_key": key,
                        "receiver": route.receiver,
                        "labels": labels_of[key],
                        "first_seen_at": now,
                        "last_sent_at": None,
                        "sent": {},
                    }
                    self.store.save_group(g, conn)
                state = {
                    str(a.id): (FIRING if a.state == FIRING and a.id in candidate_ids else "resolved")
                    for a in alerts
                }
                if not alerts:  # everything was silenced, resolved by hand or announced already
                    self.store.delete_group(key, conn)
                    continue
                reason = self._due(g, state, alerts, now, route)
                if reason is None:
                    continue
                payload = build_payload(
                    receiver=route.receiver,
                    group_key=key,
                    group_labels=g["labels"] or labels_of.get(key, {}),
                    alerts=alerts,
                    statuses=state,
                    external_url=self.external_url,
                )
                ids = [a.id for a in alerts]
                for channel in steps:
                    queued.append(
                        self.store.enqueue(
                            channel=channel,
                            reason=reason,
                            group_key=key,
                            alert_ids=ids,
                            payload=payload,
                            extra={},
                            now=now,
                            conn=conn,
                        )
                    )
                for a in alerts:
                    self.store.add_event(
                        a.id,
                        now,
                        "notified",
                        detail=f"{reason} via {', '.join(steps) or 'no channel'}",
                        conn=conn,
                    )
                log.info(
                    "group %s: %s notification (%d alert(s)) to %s", key, reason, len(alerts), list(steps)
                )
                sent = {i: st for i, st in state.items() if st == FIRING}
                if sent:
                    self.store.save_group({**g, "last_sent_at": now, "sent": sent}, conn)
                else:
                    self.store.delete_group(key, conn)
        return queued

    @staticmethod
    def _due(
        g: Mapping[str, Any],
        state: Mapping[str, str],
        alerts: Sequence[AlertRecord],
        now: datetime,
        route: Route,
    ) -> str | None:
        last = g["last_sent_at"]
        if last is None:
            if now - g["first_seen_at"] >= route.group_wait:
                return "group"
            return None
        since = now - last
        if since >= route.group_interval and dict(state) != dict(g["sent"]):
            return "group"
        unacked = any(a.state == FIRING and not a.acknowledged_by for a in alerts)
        if since >= route.repeat_interval and unacked:
            return "repeat"
        return None


def next_escalations(alert: AlertRecord, policy: EscalationPolicy, now: datetime) -> int | None:
    """Index of the escalation step due now for a firing, unacknowledged alert, or None."""
    nxt = alert.escalation_step + 1
    if nxt >= len(policy.steps) or alert.fired_at is None:
        return None
    since = alert.escalated_at or alert.fired_at
    if now - since >= policy.steps[nxt].wait:
        return nxt
    return None


ZERO = timedelta(0)
