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
from common.sql import create_tables
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


class _VersionStore:
    """The versioned documents; ``RuleStore`` below adds the canary rollout."""

    def __init__(self, control_db_url: str, *, clock: Clock | None = None) -> None:
        self.url = control_db_url
        self.clock = clock or SystemClock()
        self.engine = make_engine(control_db_url)
        create_tables(metadata, self.engine)

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


# ============================================================================ canary rollout
# A canary is a rule document for named instances first: the watcher of a target node runs it, every
# other node keeps the version in force. It ends promoted (stored as the app's next version, so every
# node runs it) or aborted (the targets go back to the version in force). Each step is an audit row.
canaries = Table(
    "guard_rule_canaries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", String(100), nullable=False, index=True),
    Column("document", JSON, nullable=False),
    Column("base_version", Integer, nullable=False),
    Column("targets", JSON, nullable=False),
    Column("guard", JSON, nullable=False),
    Column("state", String(20), nullable=False),  # running | promoted | aborted
    Column("started_by", String(200), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("why", Text, nullable=False),
    Column("ended_by", String(200), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("end_why", Text, nullable=True),
    Column("promoted_version", Integer, nullable=True),
)
canary_events = Table(
    "guard_rule_canary_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("canary_id", Integer, nullable=False, index=True),
    Column("app", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("by", String(200), nullable=False),
    Column("action", String(40), nullable=False),  # start | promote | abort | auto_abort
    Column("why", Text, nullable=False),
    Column("detail", JSON, nullable=False),
)
RUNNING, PROMOTED, ABORTED = "running", "promoted", "aborted"
DEFAULT_GUARD: dict[str, Any] = {"metric": "error_pct", "margin": 5.0, "auto": True, "min_calls": 20}
GUARD_METRICS = ("error_pct", "blocked_pct", "p99_ms")


class CanaryError(ValueError):
    """A canary step that cannot be done (none running, one already running, stale, bad targets)."""


@dataclass(frozen=True)
class Canary:
    id: int
    app: str
    document: dict[str, Any]
    base_version: int
    targets: tuple[str, ...]
    guard: dict[str, Any]
    state: str
    started_by: str
    started_at: datetime
    why: str
    ended_by: str | None = None
    ended_at: datetime | None = None
    end_why: str | None = None
    promoted_version: int | None = None

    @property
    def ruleset(self) -> RuleSet:
        return parse_document(self.document)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app": self.app,
            "state": self.state,
            "base_version": self.base_version,
            "targets": list(self.targets),
            "guard": dict(self.guard),
            "started_by": self.started_by,
            "started_at": self.started_at.isoformat(),
            "why": self.why,
            "ended_by": self.ended_by,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "end_why": self.end_why,
            "promoted_version": self.promoted_version,
            "document": self.document,
        }


def _canary(r: Any) -> Canary:
    return Canary(
        id=r.id,
        app=r.app,
        document=r.document,
        base_version=r.base_version,
        targets=tuple(r.targets),
        guard=dict(r.guard),
        state=r.state,
        started_by=r.started_by,
        started_at=as_utc(r.started_at),  # type: ignore[arg-type]
        why=r.why,
        ended_by=r.ended_by,
        ended_at=as_utc(r.ended_at),
        end_why=r.end_why,
        promoted_version=r.promoted_version,
    )


def check_guard(guard: Mapping[str, Any] | None) -> dict[str, Any]:
    """The canary's guard with defaults; names the field that is wrong."""
    g = {**DEFAULT_GUARD, **dict(guard or {})}
    if g["metric"] not in GUARD_METRICS:
        raise CanaryError(f"guard.metric must be one of {', '.join(GUARD_METRICS)}, got {g['metric']!r}")
    try:
        g["margin"] = float(g["margin"])
        g["min_calls"] = int(g["min_calls"])
    except (TypeError, ValueError) as exc:
        raise CanaryError(f"guard.margin and guard.min_calls must be numbers: {exc}") from exc
    if g["margin"] < 0:
        raise CanaryError(f"guard.margin must be >= 0, got {g['margin']}")
    g["auto"] = bool(g["auto"])
    return g


class RuleStore(_VersionStore):
    """Versioned rule documents plus the canary rollout (a document for named instances first)."""

    def active_canary(self, app: str) -> Canary | None:
        """The running canary of ``app`` (the watcher's second cheap poll), or None."""
        with self.engine.connect() as c:
            r = c.execute(
                select(canaries)
                .where(canaries.c.app == app, canaries.c.state == RUNNING)
                .order_by(canaries.c.id.desc())
                .limit(1)
            ).first()
        return _canary(r) if r is not None else None

    def canary(self, canary_id: int) -> Canary:
        with self.engine.connect() as c:
            r = c.execute(select(canaries).where(canaries.c.id == canary_id)).first()
        if r is None:
            raise CanaryError(f"no canary {canary_id}")
        return _canary(r)

    def latest_canary(self, app: str) -> Canary | None:
        with self.engine.connect() as c:
            r = c.execute(
                select(canaries).where(canaries.c.app == app).order_by(canaries.c.id.desc()).limit(1)
            ).first()
        return _canary(r) if r is not None else None

    def canary_events_of(self, canary_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(
                select(canary_events)
                .where(canary_events.c.canary_id == canary_id)
                .order_by(canary_events.c.id)
            ).all()
        return [
            {
                "at": as_utc(r.at).isoformat(),
                "by": r.by,
                "action": r.action,  # type: ignore[union-attr]
                "why": r.why,
                "detail": r.detail,
            }
            for r in rows
        ]

    def _event(
        self, c: Any, cid: int, app: str, by: str, action: str, why: str, detail: Mapping[str, Any]
    ) -> None:
        c.execute(
            insert(canary_events).values(
                canary_id=cid,
                app=app,
                at=self.clock.now(),
                by=by,
                action=action,
                why=why,
                detail=dict(detail),
            )
        )
        log.info("rules %s canary %d %s by %s: %s", app, cid, action, by, why)

    def start_canary(
        self,
        app: str,
        document: Mapping[str, Any],
        targets: list[str] | tuple[str, ...],
        by: str,
        why: str,
        guard: Mapping[str, Any] | None = None,
    ) -> Canary:
        """Store a canary of ``document`` for ``targets`` (instance names); refuses a second running one."""
        doc = canonical(document)  # raises RuleValidationError: nothing stored
        if not by or not by.strip():
            raise ValueError("by: who makes the change is required (a name)")
        if not why or not str(why).strip():
            raise ValueError("why: the reason for the change is required (text)")
        names = tuple(dict.fromkeys(t.strip() for t in targets if t and t.strip()))
        if not names:
            raise CanaryError("nodes: name at least one instance to run the canary on")
        g = check_guard(guard)
        running = self.active_canary(app)
        if running is not None:
            raise CanaryError(
                f"canary {running.id} of {app!r} is still running on {', '.join(running.targets)}: "
                "promote or abort it first"
            )
        base = self.current_version(app)
        with self.engine.begin() as c:
            cid = c.execute(
                insert(canaries).values(
                    app=app,
                    document=doc,
                    base_version=base,
                    targets=list(names),
                    guard=g,
                    state=RUNNING,
                    started_by=by.strip(),
                    started_at=self.clock.now(),
                    why=str(why).strip(),
                )
            ).inserted_primary_key[0]
            cur = self.current(app)
            diff = diff_documents(cur.document if cur else None, doc)
            self._event(
                c,
                cid,
                app,
                by.strip(),
                "start",
                str(why).strip(),
                {"targets": list(names), "base_version": base, "guard": g, "diff": diff},
            )
        return self.canary(int(cid))

    def _end(
        self,
        app: str,
        state: str,
        action: str,
        by: str,
        why: str,
        detail: Mapping[str, Any],
        promoted: int | None = None,
    ) -> Canary:
        cur = self.active_canary(app)
        if cur is None:
            raise CanaryError(f"no canary of {app!r} is running")
        with self.engine.begin() as c:
            n = c.execute(
                canaries.update()
                .where(canaries.c.id == cur.id, canaries.c.state == RUNNING)
                .values(
                    state=state,
                    ended_by=by,
                    ended_at=self.clock.now(),
                    end_why=why,
                    promoted_version=promoted,
                )
            ).rowcount
            if not n:
                raise CanaryError(f"canary {cur.id} of {app!r} ended meanwhile")
            self._event(c, cur.id, app, by, action, why, detail)
        return self.canary(cur.id)

    def promote_canary(self, app: str, by: str, why: str, *, force: bool = False) -> Canary:
        """Store the canary's document as the app's next version (every node runs it) and end the canary.

        Refused when another version was applied since the canary started (stale), unless ``force``."""
        if not by or not by.strip() or not why or not str(why).strip():
            raise ValueError("by and why are required: every step of a canary is audited")
        cur = self.active_canary(app)
        if cur is None:
            raise CanaryError(f"no canary of {app!r} is running")
        now_v = self.current_version(app)
        if now_v != cur.base_version and not force:
            raise CanaryError(
                f"stale canary: version {now_v} was applied after canary {cur.id} started on version "
                f"{cur.base_version}; promoting would overwrite it (abort, or promote with force)"
            )
        version = self._write(
            app,
            canonical(cur.document),
            by.strip(),
            f"canary {cur.id} promoted: {why}",
            restored_from=None,
            force=True,
        )
        return self._end(
            app, PROMOTED, "promote", by.strip(), str(why).strip(), {"version": version}, version
        )

    def abort_canary(
        self, app: str, by: str, why: str, *, auto: bool = False, detail: Mapping[str, Any] | None = None
    ) -> Canary:
        """End the canary: its targets go back to the version in force."""
        if not by or not by.strip() or not why or not str(why).strip():
            raise ValueError("by and why are required: every step of a canary is audited")
        return self._end(
            app, ABORTED, "auto_abort" if auto else "abort", by.strip(), str(why).strip(), dict(detail or {})
        )
