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
class Version:
    version: int
    document: dict[str, Any]
    by: str
    why: str
    at: datetime


@dataclass
class FakeRuleStore:
    """In-memory rule store with the contract of ``guardians.store.RuleStore``."""

    versions: dict[str, list[Version]] = field(default_factory=dict)
    reads: int = 0

    def current(self, app: str) -> Version | None:
        self.reads += 1
        vs = self.versions.get(app) or []
        return copy.deepcopy(vs[-1]) if vs else None

    def apply(self, app: str, document: dict[str, Any], by: str, why: str) -> int:
        doc = _roundtrip(canonical(document))  # raises RuleValidationError like the real store
        vs = self.versions.setdefault(app, [])
        vs.append(Version(len(vs) + 1, doc, by, why, datetime.now(UTC)))
        return len(vs)

    def history(self, app: str) -> list[Version]:
        self.reads += 1
        return list(reversed(self.versions.get(app) or []))

    def version(self, app: str, n: int) -> Version:
        return next(v for v in self.versions[app] if v.version == n)

    def rollback(self, app: str, n: int, by: str, why: str) -> int:
        return self.apply(app, self.version(app, n).document, by, why)


@dataclass(frozen=True)
class Node:
    instance: str
    address: str
    status: str
    version: str
    rule_version: int | None
    last_beat: datetime | None
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


def _roundtrip(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop canonical defaults that guardians' own parser refuses to read back (cold_factor outside
    warm-up) — a guardians bug reported to its owner; a no-op once it is fixed."""
    for rule in doc.get("flow", []):
        if rule.get("behavior") not in ("warm_up", "warm_up_queue") and rule.get("cold_factor") == 3:
            rule.pop("cold_factor")
    return doc
