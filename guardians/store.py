"""RuleStore: versioned rule documents per application in the control DB.

Every change is a new row (version n+1) with who, when, why and the diff from the
previous version; nothing is updated in place, so history is complete and any
version can be restored (a rollback is a new version with the old content).
Only validated, canonical documents are stored: an invalid one raises
``RuleValidationError`` and leaves the store untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from common.clock import Clock, SystemClock
from guardians.db import as_utc, make_engine
from guardians.rules import RuleSet, canonical, diff_documents, parse_document

log = logging.getLogger(__name__)

metadata = MetaData()
rule_versions = Table(
    "guard_rule_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", String(100), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("document", JSON, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("why", Text, nullable=False),
    Column("diff", JSON, nullable=False),
    Column("restored_from", Integer, nullable=True),
    UniqueConstraint("app", "version", name="uq_guard_rule_versions_app_version"),
)


class VersionNotFound(LookupError):
    pass


@dataclass(frozen=True)
class RuleVersion:
    app: str
    version: int
    document: dict[str, Any]
    created_by: str
    created_at: datetime
    why: str
    diff: dict[str, Any] = field(default_factory=dict)
    restored_from: int | None = None

    @property
    def ruleset(self) -> RuleSet:
        return parse_document(self.document)

    def summary(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "version": self.version,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "why": self.why,
            "restored_from": self.restored_from,
            "rules": {k: len(v) for k, v in self.document.items()},
            "changes": {
                k: {"added": len(v["added"]), "removed": len(v["removed"])} for k, v in self.diff.items()
            },
        }


def _row(r: Any) -> RuleVersion:
    return RuleVersion(
        app=r.app,
        version=r.version,
        document=r.document,
        created_by=r.created_by,
        created_at=as_utc(r.created_at),  # type: ignore[arg-type]
        why=r.why,
        diff=r.diff or {},
        restored_from=r.restored_from,
    )


class RuleStore:
    def __init__(self, control_db_url: str, *, clock: Clock | None = None) -> None:
        self.url = control_db_url
        self.clock = clock or SystemClock()
        self.engine = make_engine(control_db_url)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- reads ----------------------------------------------------------------
    def current_version(self, app: str) -> int:
        """The newest version number (0 if the app has no rules yet): the watcher's cheap poll."""
        with self.engine.connect() as c:
            v = c.execute(
                select(func.max(rule_versions.c.version)).where(rule_versions.c.app == app)
            ).scalar()
        return int(v or 0)

    def current(self, app: str) -> RuleVersion | None:
        with self.engine.connect() as c:
            r = c.execute(
                select(rule_versions)
                .where(rule_versions.c.app == app)
                .order_by(rule_versions.c.version.desc())
                .limit(1)
            ).first()
        return _row(r) if r is not None else None

    def version(self, app: str, n: int) -> RuleVersion:
        with self.engine.connect() as c:
            r = c.execute(
                select(rule_versions).where(rule_versions.c.app == app, rule_versions.c.version == n)
            ).first()
        if r is None:
            raise VersionNotFound(f"app {app!r} has no rule version {n} (see `tradeguard rules history`)")
        return _row(r)

    def history(self, app: str, limit: int = 1000) -> list[RuleVersion]:
        """Versions newest first."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(rule_versions)
                .where(rule_versions.c.app == app)
                .order_by(rule_versions.c.version.desc())
                .limit(limit)
            ).all()
        return [_row(r) for r in rows]

    def apps(self) -> list[str]:
        with self.engine.connect() as c:
            return [
                r[0] for r in c.execute(select(rule_versions.c.app).distinct().order_by(rule_versions.c.app))
            ]

    def diff(self, app: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """What applying ``document`` would change (validates it first)."""
        new = canonical(document)
        cur = self.current(app)
        return diff_documents(cur.document if cur else None, new)

    # -- writes ---------------------------------------------------------------
    def apply(self, app: str, document: Mapping[str, Any], by: str, why: str) -> int:
        """Validate and store ``document`` as the app's next version; returns the version in force.

        An identical document makes no new version (the current number is returned).
        """
        new = canonical(document)  # raises RuleValidationError: nothing stored
        return self._write(app, new, by, why, restored_from=None)

    def rollback(self, app: str, n: int, by: str, why: str) -> int:
        """Restore version ``n``'s content as a new version."""
        old = self.version(app, n)
        new = canonical(old.document)
        return self._write(app, new, by, why or f"rollback to v{n}", restored_from=n, force=True)

    def _write(
        self,
        app: str,
        doc: dict[str, Any],
        by: str,
        why: str,
        *,
        restored_from: int | None,
        force: bool = False,
    ) -> int:
        if not by or not by.strip():
            raise ValueError("by: who makes the change is required (a name)")
        if why is None or not str(why).strip():
            raise ValueError("why: the reason for the change is required (text)")
        for attempt in range(10):
            cur = self.current(app)
            if cur is not None and cur.document == doc and not force:
                return cur.version
            version = (cur.version if cur else 0) + 1
            try:
                with self.engine.begin() as c:
                    c.execute(
                        insert(rule_versions).values(
                            app=app,
                            version=version,
                            document=doc,
                            created_by=by.strip(),
                            created_at=self.clock.now(),
                            why=str(why).strip(),
                            diff=diff_documents(cur.document if cur else None, doc),
                            restored_from=restored_from,
                        )
                    )
            except IntegrityError:
                log.info("rule version %s/%d taken concurrently, retrying (%d)", app, version, attempt + 1)
                continue
            log.info("rules %s v%d stored by %s: %s", app, version, by, why)
            return version
        raise RuntimeError(f"could not store a new rule version for {app!r}: too much concurrent writing")
