"""Fakes implementing the console's ports (rule store, fleet, chaos) for unit tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from guardians.rules import canonical


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass
class Version:  # the shape of guardians.store.RuleVersion
    version: int
    document: dict[str, Any]
    created_by: str
    why: str
    created_at: datetime
    diff: dict[str, Any] = field(default_factory=dict)
    restored_from: int | None = None


@dataclass
class FakeRuleStore:
    """In-memory rule store with the contract of ``guardians.store.RuleStore``."""

    versions: dict[str, list[Version]] = field(default_factory=dict)
    reads: int = 0

    def current(self, app: str) -> Version | None:
        self.reads += 1
        vs = self.versions.get(app) or []
        return copy.deepcopy(vs[-1]) if vs else None

    def apply(
        self, app: str, document: dict[str, Any], by: str, why: str, restored_from: int | None = None
    ) -> int:
        doc = canonical(document)  # raises RuleValidationError like the real store
        vs = self.versions.setdefault(app, [])
        if vs and vs[-1].document == doc and not restored_from:
            return vs[-1].version  # like the real store: an identical document makes no new version
        vs.append(Version(len(vs) + 1, doc, by, why, datetime.now(UTC), restored_from=restored_from))
        return len(vs)

    def history(self, app: str) -> list[Version]:
        self.reads += 1
        return list(reversed(self.versions.get(app) or []))

    def version(self, app: str, n: int) -> Version:
        return next(v for v in self.versions[app] if v.version == n)

    def rollback(self, app: str, n: int, by: str, why: str) -> int:
        return self.apply(app, self.version(app, n).document, by, why, restored_from=n)


@dataclass(frozen=True)
class Node:  # the fields of guardians.fleet.NodeStatus the console reads
    instance: str
    address: str
    state: str
    version: str
    rule_version: int | None
    last_beat_at: datetime | None
    last_snapshot_at: datetime | None


@dataclass
class FakeFleet:
    nodes_: list[Node] = field(default_factory=list)
    reads: int = 0

    def nodes(self, now: datetime) -> list[Node]:
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


@dataclass
class FakeAlerts:
    """The Alerts page's port, in memory (plain dicts like ``alerts.service.AlertService``)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    silence_list: list[dict[str, Any]] = field(default_factory=list)
    reads: int = 0

    def add(self, alert_id: int, state: str, rule: str, **extra: Any) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        a = {
            "id": alert_id,
            "state": state,
            "rule": rule,
            "severity": extra.pop("severity", "critical"),
            "labels": {"alertname": rule, "instance": "n1"},
            "summary": f"{rule} summary",
            "value": 0.5,
            "active_since": now,
            "fired_at": now if state == "firing" else None,
            "acknowledged": False,
            "acknowledged_by": None,
            "resolved_at": None,
            "resolved_by": None,
            "silenced_by": [],
            "inhibited": False,
            "events": [{"at": now, "kind": state, "by": None, "detail": None, "value": 0.5}],
        }
        a.update(extra)
        self.alerts.append(a)
        return a

    def list_alerts(self, states=("firing", "pending"), *, acknowledged=None, limit=500):
        self.reads += 1
        return [copy.deepcopy(a) for a in self.alerts if a["state"] in states]

    def _get(self, alert_id: int) -> dict[str, Any]:
        return next(a for a in self.alerts if a["id"] == alert_id)

    def timeline(self, alert_id: int) -> dict[str, Any]:
        self.reads += 1
        a = self._get(alert_id)
        return {"alert": copy.deepcopy(a), "events": list(a["events"]), "notifications": []}

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

    def _event(self, a: dict[str, Any], kind: str, by: str) -> None:
        a["events"].append(
            {"at": datetime.now(UTC).isoformat(), "kind": kind, "by": by, "detail": None, "value": None}
        )

    def _expect(self, alert_id: int, expected_state: str | None) -> dict[str, Any]:
        a = self._get(alert_id)
        if expected_state is not None and a["state"] != expected_state:
            raise ValueError(f"Alert #{alert_id} {a['rule']} changed from {expected_state} to {a['state']}")
        return a

    def acknowledge(
        self, alert_id: int, by: str, comment: str | None = None, *, expected_state: str | None = None
    ) -> dict[str, Any]:
        a = self._expect(alert_id, expected_state)
        a["acknowledged"], a["acknowledged_by"] = True, by
        self._event(a, "acknowledged", by)
        return a

    def unacknowledge(self, alert_id: int, by: str, *, expected_state: str | None = None) -> dict[str, Any]:
        a = self._expect(alert_id, expected_state)
        a["acknowledged"], a["acknowledged_by"] = False, None
        self._event(a, "unacknowledged", by)
        return a

    def resolve(
        self, alert_id: int, by: str, comment: str | None = None, *, expected_state: str | None = None
    ) -> dict[str, Any]:
        a = self._expect(alert_id, expected_state)
        a["state"], a["resolved_by"], a["resolved_at"] = "resolved", by, datetime.now(UTC).isoformat()
        self._event(a, "resolved", by)
        return a

    def history(self, *, limit: int = 200, since=None) -> list[dict[str, Any]]:
        self.reads += 1
        return [copy.deepcopy(a) for a in self.alerts if a.get("fired_at")][:limit]

    def silences(self, *, include_expired: bool = False) -> list[dict[str, Any]]:
        self.reads += 1
        return [dict(s) for s in self.silence_list if include_expired or s["status"] != "expired"]

    def create_silence(self, matchers, *, created_by, comment, duration=None, starts_at=None, ends_at=None):
        from guardians.errors import RuleValidationError  # any error with (path, message) pairs

        problems = []
        if not created_by:
            problems.append(("created_by", "required: who is acting (a name)"))
        if not comment:
            problems.append(("comment", "required: say why this is silenced"))
        if problems:
            raise RuleValidationError(problems)
        now = datetime.now(UTC)
        s = {
            "id": len(self.silence_list) + 1,
            "matchers": list(matchers),
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "created_by": created_by,
            "comment": comment,
            "expired_by": None,
            "status": "active",
        }
        self.silence_list.append(s)
        return s

    def expire_silence(self, silence_id: int, by: str) -> dict[str, Any]:
        s = next(s for s in self.silence_list if s["id"] == silence_id)
        s["status"], s["expired_by"] = "expired", by
        return s

    def on_call_now(self, at=None) -> list[dict[str, Any]]:
        self.reads += 1
        return [
            {
                "rotation": "primary",
                "name": "alice",
                "email": "a@example.com",
                "override": False,
                "shift_start": None,
                "shift_end": None,
            }
        ]
