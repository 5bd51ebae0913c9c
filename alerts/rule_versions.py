"""Versions of the alert rules in force: who changed them, when, why, the whole rule set and the diff.

Like the guardian rules (``guardians.store``): every change of the alert rules (``AlertService.apply``,
enabling, disabling or deleting a rule, a rollback) appends version n+1 holding the complete rule set
after the change (``{"rules": [...]}``, sorted by name), who made it, when, why, and the diff from
version n (rules added, removed, and changed with their before/after documents). Nothing is updated
in place; a rollback restores version n's rules into ``alert_rules`` and records a new version
(``restored_from = n``). An unchanged rule set makes no new version.

Its table ``alert_rule_versions`` lives in the control DB beside ``alert_rules`` and is created on
first use, like every control-DB table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from alerts.errors import AlertConfigError, NotFound
from alerts.rulefile import parse_document, rule_to_dict
from alerts.store import AlertStore, UTCDateTime
from common.clock import Clock, SystemClock
from common.sql import create_tables

log = logging.getLogger(__name__)

metadata = sa.MetaData()
versions_t = sa.Table(
    "alert_rule_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("why", sa.Text, nullable=False),
    sa.Column("diff", sa.JSON, nullable=False),
    sa.Column("restored_from", sa.Integer, nullable=True),
)


@dataclass(frozen=True)
class AlertRuleVersion:
    version: int
    document: dict[str, Any]  # {"rules": [rule documents, by name]}
    created_by: str
    created_at: datetime
    why: str
    diff: dict[str, Any] = field(default_factory=dict)  # {"added": [...], "removed": [...], "changed": [...]}
    restored_from: int | None = None

    @property
    def rules(self) -> list[dict[str, Any]]:
        return list(self.document.get("rules", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "why": self.why,
            "restored_from": self.restored_from,
            "rules": len(self.rules),
            "diff": self.diff,
            "document": self.document,
        }


def rule_set(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The canonical versioned document of a list of rule documents (sorted by name)."""
    return {"rules": sorted((dict(d) for d in documents), key=lambda d: str(d.get("name", "")))}


def diff_rule_sets(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Names added and removed, and ``{"name", "before", "after"}`` per changed rule."""
    before = {d["name"]: d for d in (old or {}).get("rules", [])}
    after = {d["name"]: d for d in new.get("rules", [])}
    return {
        "added": [after[n] for n in sorted(after) if n not in before],
        "removed": [before[n] for n in sorted(before) if n not in after],
        "changed": [
            {"name": n, "before": before[n], "after": after[n]}
            for n in sorted(after)
            if n in before and before[n] != after[n]
        ],
    }


def _row(r: Any) -> AlertRuleVersion:
    return AlertRuleVersion(
        version=r.version,
        document=r.document,
        created_by=r.created_by,
        created_at=r.created_at,
        why=r.why,
        diff=r.diff or {},
        restored_from=r.restored_from,
    )


class AlertRuleVersions:
    """The version history of the alert rules of one control DB (``store``'s engine)."""

    def __init__(self, store: AlertStore | Engine, *, clock: Clock | None = None) -> None:
        self.store = store if isinstance(store, AlertStore) else AlertStore(store)
        self.engine: Engine = self.store.engine
        self.clock = clock or SystemClock()
        create_tables(metadata, self.engine)

    # -- reads ----------------------------------------------------------------
    def current(self) -> AlertRuleVersion | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(versions_t).order_by(versions_t.c.version.desc()).limit(1)).first()
        return _row(r) if r is not None else None

    def version(self, n: int) -> AlertRuleVersion:
        with self.engine.connect() as c:
            r = c.execute(sa.select(versions_t).where(versions_t.c.version == n)).first()
        if r is None:
            raise NotFound(
                f"version: the alert rules have no version {n} (see `tradeguard alerts rules history`)"
            )
        return _row(r)

    def history(self, limit: int = 200) -> list[AlertRuleVersion]:
        """Versions newest first."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(versions_t).order_by(versions_t.c.version.desc()).limit(limit)).all()
        return [_row(r) for r in rows]

    # -- writes ---------------------------------------------------------------
    def record(self, *, by: str, why: str, restored_from: int | None = None) -> int | None:
        """Snapshot the rules in force (``alert_rules``) as a new version if they differ from the newest
        version; returns the version number in force (None when there are no rules and no versions)."""
        if not by or not str(by).strip():
            raise AlertConfigError([("by", "required: who makes the change (a name)")])
        for attempt in range(10):
            doc = rule_set(self.store.rule_documents())
            cur = self.current()
            if cur is not None and cur.document == doc and restored_from is None:
                return cur.version
            if cur is None and not doc["rules"]:
                return None
            version = (cur.version if cur else 0) + 1
            try:
                with self.engine.begin() as c:
                    c.execute(
                        versions_t.insert().values(
                            version=version,
                            document=doc,
                            created_by=str(by).strip(),
                            created_at=self.clock.now(),
                            why=str(why or "").strip() or "(no reason given)",
                            diff=diff_rule_sets(cur.document if cur else None, doc),
                            restored_from=restored_from,
                        )
                    )
            except IntegrityError:
                log.info("alert rule version %d taken concurrently, retrying (%d)", version, attempt + 1)
                continue
            log.info("alert rules v%d stored by %s: %s", version, by, why)
            return version
        raise RuntimeError("could not store a new alert rule version: too much concurrent writing")

    def rollback(self, n: int, by: str, why: str = "") -> int:
        """Restore version ``n``'s rules (added back, changed back, the others deleted) as a new version."""
        old = self.version(n)
        if not by or not str(by).strip():
            raise AlertConfigError([("by", "required: who makes the change (a name)")])
        # re-validated: a version written by an older schema must still be a valid document today
        cfg = parse_document({"rules": old.rules})
        docs = [rule_to_dict(r) for r in cfg.rules or ()]
        self.store.replace_rules(docs, by=str(by).strip(), now=self.clock.now(), prune=True)
        version = self.record(by=by, why=why or f"rollback to v{n}", restored_from=n)
        assert version is not None
        return version
