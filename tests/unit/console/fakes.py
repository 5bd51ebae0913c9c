"""Fakes implementing the console's ports for unit tests: they return the real adapters' types
(``RuleVersion``, ``NodeStatus``, ``AlertService``'s dicts) and raise the real adapters' errors."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.errors import AlertConfigError, InvalidAction, NotFound
from alerts.model import Matcher
from alerts.proposal_apply import NoProposal
from common.durations import parse_duration
from console.nodes import NoLiveNode
from guardians.fleet import NodeStatus
from guardians.rules import canonical, diff_documents
from guardians.store import Canary, RuleVersion, VersionNotFound


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass
class FakeRuleStore:
    """In-memory rule store with the contract of ``guardians.store.RuleStore`` (its ``RuleVersion``s)."""

    versions: dict[str, list[RuleVersion]] = field(default_factory=dict)
    reads: int = 0

    def current(self, app: str) -> RuleVersion | None:
        self.reads += 1
        vs = self.versions.get(app) or []
        return vs[-1] if vs else None

    def apply(self, app: str, document: dict[str, Any], by: str, why: str) -> int:
        return self._write(app, canonical(document), by, why, None)  # raises RuleValidationError

    def _write(self, app: str, doc: dict[str, Any], by: str, why: str, restored_from: int | None) -> int:
        if not by.strip():
            raise ValueError("by: who makes the change is required (a name)")
        if not why.strip():
            raise ValueError("why: the reason for the change is required (text)")
        vs = self.versions.setdefault(app, [])
        if vs and vs[-1].document == doc and restored_from is None:
            return vs[-1].version  # like the real store: an identical document makes no new version
        previous = vs[-1].document if vs else None
        vs.append(
            RuleVersion(
                app=app,
                version=len(vs) + 1,
                document=copy.deepcopy(doc),
                created_by=by,
                created_at=datetime.now(UTC),
                why=why,
                diff=diff_documents(previous, doc),
                restored_from=restored_from,
            )
        )
        return len(vs)

    def history(self, app: str) -> list[RuleVersion]:
        self.reads += 1
        return list(reversed(self.versions.get(app) or []))

    def version(self, app: str, n: int) -> RuleVersion:
        found = next((v for v in self.versions.get(app) or [] if v.version == n), None)
        if found is None:
            raise VersionNotFound(f"app {app!r} has no rule version {n}")
        return found

    def active_canary(self, app: str) -> Canary | None:
        return None  # the fake runs no canary rollouts

    def rollback(self, app: str, n: int, by: str, why: str) -> int:
        return self._write(app, canonical(self.version(app, n).document), by, why, restored_from=n)


def node(
    instance: str,
    address: str,
    state: str,
    version: str,
    rule_version: int | None,
    last_beat_at: datetime,
    last_snapshot_at: datetime | None,
) -> NodeStatus:
    """A ``guardians.fleet.NodeStatus`` as ``Fleet.nodes`` returns it."""
    return NodeStatus(
        instance=instance,
        address=address,
        version=version,
        rule_version=rule_version,
        last_snapshot_at=last_snapshot_at,
        last_beat_at=last_beat_at,
        started_at=last_beat_at,
        state=state,
        age_s=0.0,
    )


@dataclass
class FakeFleet:
    nodes_: list[NodeStatus] = field(default_factory=list)
    reads: int = 0

    def nodes(self, now: datetime) -> list[NodeStatus]:
        self.reads += 1
        return list(self.nodes_)


@dataclass
class FakeChaos:
    settings: dict[str, Any] = field(
        default_factory=lambda: {"latency_ms": 0, "error_rate": 0.0, "outage": False}
    )
    calls: list[dict[str, Any]] = field(default_factory=list)

    def get(self) -> dict[str, Any]:
        return dict(self.settings)

    def set(self, *, latency_ms: int, error_rate: float, outage: bool, by: str) -> dict[str, Any]:
        self.calls.append({"latency_ms": latency_ms, "error_rate": error_rate, "outage": outage, "by": by})
        self.settings = {"latency_ms": latency_ms, "error_rate": error_rate, "outage": outage}
        return dict(self.settings)


class NoNodeChaos:
    """``NodeChaos`` when no node is live (every call raises ``NoLiveNode``)."""

    def get(self) -> dict[str, Any]:
        raise NoLiveNode("no live node to reach: start `tradeguard node` (chaos is applied through a node)")

    def set(self, **_: Any) -> dict[str, Any]:
        return self.get()


@dataclass
class FakeAlerts:
    """The Alerts page's port in memory: ``alerts.service.AlertService``'s dicts and errors
    (``NotFound``, ``InvalidAction``, ``AlertConfigError``)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    silence_list: list[dict[str, Any]] = field(default_factory=list)
    events: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    rule_docs: list[dict[str, Any]] = field(default_factory=list)  # what ``rules()`` lists
    on_call: dict[str, dict[str, Any]] = field(default_factory=dict)  # rotation -> its on-call entry
    reads: int = 0

    def add(self, alert_id: int, state: str, rule: str, **extra: Any) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        a = {  # AlertRecord.to_dict() plus what AlertService adds
            "id": alert_id,
            "fingerprint": f"fp-{alert_id}",
            "rule": rule,
            "labels": {"alertname": rule, "instance": "n1"},
            "annotations": {"summary": f"{rule} summary"},
            "severity": extra.pop("severity", "critical"),
            "state": state,
            "value": 0.5,
            "active_since": now,
            "fired_at": now if state == "firing" else None,
            "last_true_at": now,
            "resolved_at": None,
            "resolved_by": None,
            "acknowledged_by": None,
            "acknowledged_at": None,
            "escalation_step": 0,
            "acknowledged": False,
            "silenced_by": [],
            "inhibited": False,
            "inhibited_by": None,
            "summary": f"{rule} summary",
        }
        a.update(extra)
        self.alerts.append(a)
        self.events[alert_id] = [{"at": now, "kind": state, "by": None, "detail": None, "value": 0.5}]
        return copy.deepcopy(a)

    def list_alerts(self, states=("firing", "pending"), *, acknowledged=None, limit=500):
        self.reads += 1
        return [copy.deepcopy(a) for a in self.alerts if a["state"] in states][:limit]

    def _get(self, alert_id: int) -> dict[str, Any]:
        found = next((a for a in self.alerts if a["id"] == alert_id), None)
        if found is None:
            raise NotFound(f"no alert with id {alert_id}")
        return found

    def get_alert(self, alert_id: int) -> dict[str, Any]:
        self.reads += 1
        return copy.deepcopy(self._get(alert_id))

    def timeline(self, alert_id: int) -> dict[str, Any]:
        self.reads += 1
        a = self._get(alert_id)
        return {"alert": copy.deepcopy(a), "events": list(self.events[alert_id]), "notifications": []}

    def metric_behind(self, alert_id: int, *, minutes: int = 30, bucket_s: int = 10) -> dict[str, Any]:
        self.reads += 1
        now = datetime.now(UTC)
        return {
            "rule": self._get(alert_id)["rule"],
            "threshold": 0.95,
            "op": "<",
            "points": [
                {"time": (now - timedelta(seconds=60 - 10 * i)).isoformat(), "value": 0.5} for i in range(5)
            ],
        }

    def _act(self, alert_id: int, kind: str, by: str, detail: str | None = None) -> None:
        if not by or not by.strip():
            raise AlertConfigError([("by", "required: who is acting (a name)")])
        self.events[alert_id].append(
            {"at": datetime.now(UTC).isoformat(), "kind": kind, "by": by, "detail": detail, "value": None}
        )

    def _expect(self, alert_id: int, expected_state: str | None) -> dict[str, Any]:
        a = self._get(alert_id)
        if expected_state is not None and a["state"] != expected_state:
            raise InvalidAction(
                f"Alert #{alert_id} {a['rule']} changed from {expected_state} to {a['state']} since you "
                "opened it; review and try again"
            )
        return a

    def acknowledge(
        self, alert_id: int, by: str, comment: str | None = None, *, expected_state: str | None = None
    ) -> dict[str, Any]:
        a = self._expect(alert_id, expected_state)
        if a["state"] not in ("firing", "pending"):
            raise InvalidAction(
                f"alert {alert_id} is {a['state']}; only pending or firing alerts can be acknowledged"
            )
        self._act(alert_id, "acknowledged", by, comment)
        a["acknowledged"], a["acknowledged_by"] = True, by
        a["acknowledged_at"] = datetime.now(UTC).isoformat()
        return copy.deepcopy(a)

    def unacknowledge(self, alert_id: int, by: str, *, expected_state: str | None = None) -> dict[str, Any]:
        a = self._expect(alert_id, expected_state)
        if not a["acknowledged_by"]:
            raise InvalidAction(f"alert {alert_id} is not acknowledged")
        self._act(alert_id, "unacknowledged", by)
        a["acknowledged"], a["acknowledged_by"], a["acknowledged_at"] = False, None, None
        return copy.deepcopy(a)

    def resolve(
        self, alert_id: int, by: str, comment: str | None = None, *, expected_state: str | None = None
    ) -> dict[str, Any]:
        a = self._expect(alert_id, expected_state)
        if a["state"] not in ("firing", "pending"):
            raise InvalidAction(f"alert {alert_id} is already {a['state']}")
        self._act(alert_id, "resolved", by, comment or "resolved by hand")
        a["state"], a["resolved_by"], a["resolved_at"] = "resolved", by, datetime.now(UTC).isoformat()
        return copy.deepcopy(a)

    def silence_alert(self, alert_id: int, *, created_by: str, comment: str, duration: Any,
                      expected_state: str | None = None) -> dict[str, Any]:
        a = self._expect(alert_id, expected_state)
        if a["state"] not in ("firing", "pending"):
            raise InvalidAction(
                f"Alert #{alert_id} {a['rule']} is {a['state']}; only open alerts can be silenced"
            )
        matchers = [f"{k}={v}" for k, v in sorted(a["labels"].items())]
        s = self.create_silence(matchers, created_by=created_by, comment=comment, duration=duration)
        self._act(alert_id, "silenced", created_by, comment)
        return s

    def escalate(self, alert_id: int, by: str, to_step: int | None = None) -> dict[str, Any]:
        if not by or not by.strip():
            raise AlertConfigError([("by", "required: who is acting (a name)")])
        a = self._get(alert_id)
        if a["state"] != "firing":
            raise InvalidAction(f"alert {alert_id} is {a['state']}; only a firing alert can be escalated")
        self._act(alert_id, "escalated", by)
        a["escalation_step"] = a["escalation_step"] + 1 if to_step is None else int(to_step) - 1
        return {**copy.deepcopy(a), "queued_notifications": []}

    def set_on_call(self, who: str, *, by: str, duration: Any = "8h", rotation: str = "primary",
                    email: str | None = None) -> dict[str, Any]:
        if not by or not by.strip():
            raise AlertConfigError([("by", "required: who is acting (a name)")])
        if not who or not who.strip():
            raise AlertConfigError([("who", "required: the name of who goes on call")])
        try:
            span = parse_duration(duration)
        except ValueError as exc:
            raise AlertConfigError([("duration", str(exc))]) from exc
        now = datetime.now(UTC)
        self.on_call[rotation] = {"rotation": rotation, "name": who.strip(), "email": email, "override": True,
                                  "shift_start": now.isoformat(), "shift_end": (now + span).isoformat()}
        return dict(self.on_call[rotation])

    def rules(self) -> list[dict[str, Any]]:
        self.reads += 1
        return [dict(d, open={"firing": 0, "pending": 0}) for d in self.rule_docs]

    def proposal_plan(self, alert_id: int) -> dict[str, Any]:
        self._get(alert_id)
        raise NoProposal(f"alert #{alert_id}'s rule proposes no fix")  # the fake's rules propose nothing

    def apply_proposal(self, alert_id: int, by: str | None, **_: Any) -> dict[str, Any]:
        return self.proposal_plan(alert_id)

    def history(self, *, limit: int = 200, since=None) -> list[dict[str, Any]]:
        self.reads += 1
        return [copy.deepcopy(a) for a in self.alerts if a.get("fired_at")][:limit]

    def silences(self, *, include_expired: bool = False) -> list[dict[str, Any]]:
        self.reads += 1
        return [dict(s) for s in self.silence_list if include_expired or s["status"] != "expired"]

    def create_silence(self, matchers, *, created_by, comment, duration=None, starts_at=None, ends_at=None):
        parsed = [Matcher.parse(m) for m in matchers]  # ValueError for a bad matcher, like the service
        if not parsed:
            raise AlertConfigError([("matchers", "at least one matcher label=value is required")])
        if not created_by or not created_by.strip():
            raise AlertConfigError([("created_by", "required: who is acting (a name)")])
        if not comment or not comment.strip():
            raise AlertConfigError([("comment", "required: say why this is silenced")])
        start = starts_at or datetime.now(UTC)
        end = ends_at or start + parse_duration(duration)
        s = {
            "id": len(self.silence_list) + 1,
            "matchers": [str(m) for m in parsed],
            "starts_at": start.isoformat(),
            "ends_at": end.isoformat(),
            "created_by": created_by,
            "comment": comment,
            "expired_by": None,
            "status": "active",
        }
        self.silence_list.append(s)
        return dict(s)

    def expire_silence(self, silence_id: int, by: str) -> dict[str, Any]:
        s = next((s for s in self.silence_list if s["id"] == silence_id), None)
        if s is None:
            raise NotFound(f"no silence with id {silence_id}")
        s["status"], s["expired_by"] = "expired", by
        return dict(s)

    def on_call_now(self, at=None) -> list[dict[str, Any]]:
        self.reads += 1
        primary = {"rotation": "primary", "name": "alice", "email": "a@example.com", "override": False,
                   "shift_start": None, "shift_end": None}
        return [dict(e) for e in {"primary": primary, **self.on_call}.values()]
