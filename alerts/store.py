"""The alerting tables in the control DB (SQLAlchemy Core) and the repository over them.

``sqlite:///…`` by default, PostgreSQL by URL. Tables: ``alert_rules``,
``alert_config`` (route, inhibit rules, channels, escalation policies, rotations),
``alerts`` (one row per alert instance), ``alert_events`` (each alert's timeline),
``alert_silences``, ``alert_groups`` (grouping timers), ``alert_notifications`` (the
delivery queue), ``alert_deliveries`` (every attempt, success or failure) and
``alert_worker_status`` (the worker's last cycle, for ``tradeguard worker --health``).

Exactly once in the delivery log, at least once to the channel: a deliverer first *claims* a due
notification with a conditional UPDATE (:meth:`AlertStore.claim_due`): it is free (never claimed, or
claimed under an older fencing token, or the claim ran out) and, with a lease, the claimer's token is
still the lease's (same statement). Only the claimer sends it; its result is recorded by a second
conditional UPDATE that checks the claim is still its own (:meth:`AlertStore.record_delivery`), and the
``alert_deliveries`` row is written in that transaction only when the UPDATE matched. A leader killed
between sending and recording leaves the claim behind; its successor (a higher token) re-claims and
re-sends with the same ``idempotency_key``, which receivers deduplicate.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from alerts.errors import NotFound
from alerts.model import FIRING, PENDING, Matcher, Silence
from common.sql import UTCDateTime, create_tables, open_engine

log = logging.getLogger(__name__)


metadata = sa.MetaData()

rules_t = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)

config_t = sa.Table(
    "alert_config",
    metadata,
    sa.Column("section", sa.String(64), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)

alerts_t = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(32), nullable=False, index=True),
    sa.Column("rule", sa.String(200), nullable=False, index=True),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("annotations", sa.JSON, nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("active_since", UTCDateTime, nullable=False),
    sa.Column("fired_at", UTCDateTime, nullable=True),
    sa.Column("last_true_at", UTCDateTime, nullable=True),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Column("resolved_by", sa.String(200), nullable=True),
    sa.Column("acknowledged_by", sa.String(200), nullable=True),
    sa.Column("acknowledged_at", UTCDateTime, nullable=True),
    sa.Column("escalation_step", sa.Integer, nullable=False, default=0),
    sa.Column("escalated_at", UTCDateTime, nullable=True),
)

events_t = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.Integer, nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("by", sa.String(200), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("value", sa.Float, nullable=True),
)

silences_t = sa.Table(
    "alert_silences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("matchers", sa.JSON, nullable=False),
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("ends_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expired_by", sa.String(200), nullable=True),
)

groups_t = sa.Table(
    "alert_groups",
    metadata,
    sa.Column("group_key", sa.String(500), primary_key=True),
    sa.Column("receiver", sa.String(200), nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("last_sent_at", UTCDateTime, nullable=True),
    sa.Column("sent", sa.JSON, nullable=False),  # {alert_id: "firing"|"resolved"} as last notified
)

notifications_t = sa.Table(
    "alert_notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("channel", sa.String(200), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),  # group | repeat | escalation
    sa.Column("group_key", sa.String(500), nullable=True),
    sa.Column("alert_ids", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),  # pending | sent | failed
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("extra", sa.JSON, nullable=False),  # e.g. {"to": [...]} for escalation to the on-call
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    # stable per notification, sent as Idempotency-Key: hash(channel, groupKey) + ":" + sequence
    sa.Column("idempotency_key", sa.String(80), nullable=True),
    # the delivery claim: who may send it now (holder + the leader lease's fencing token)
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("claim_token", sa.BigInteger, nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
)

deliveries_t = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.Integer, nullable=False, index=True),
    sa.Column("channel", sa.String(200), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
)

status_t = sa.Table(
    "alert_worker_status",
    metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
)


@dataclass
class AlertRecord:
    """One alert instance (an open one lives in the evaluator's memory too)."""

    id: int
    fingerprint: str
    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    state: str
    active_since: datetime
    value: float | None = None
    fired_at: datetime | None = None
    last_true_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    escalation_step: int = 0
    escalated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.state in (PENDING, FIRING)

    def to_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "severity": self.severity,
            "state": self.state,
            "value": self.value,
            "active_since": iso(self.active_since),
            "fired_at": iso(self.fired_at),
            "last_true_at": iso(self.last_true_at),
            "resolved_at": iso(self.resolved_at),
            "resolved_by": self.resolved_by,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": iso(self.acknowledged_at),
            "escalation_step": self.escalation_step,
        }


_ALERT_COLUMNS = [c.name for c in alerts_t.columns]


def _record(row: Any) -> AlertRecord:
    m = row._mapping
    return AlertRecord(**{k: m[k] for k in _ALERT_COLUMNS})


def _silence(row: Any) -> Silence:
    m = row._mapping
    return Silence(
        id=m["id"],
        matchers=tuple(Matcher(x["name"], x["value"], x.get("op", "=")) for x in m["matchers"]),
        starts_at=m["starts_at"],
        ends_at=m["ends_at"],
        created_by=m["created_by"],
        comment=m["comment"],
        expired_by=m["expired_by"],
    )


def build_engine(url: str) -> Engine:
    """An engine for the control DB (common/sql.py: SQLite with WAL and a busy timeout, or PostgreSQL)."""
    return open_engine(url, what="control DB", field="control_db")


class AlertStore:
    """Every read and write of the alerting tables. Creates the tables on first use."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = build_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        create_tables(metadata, self.engine)
        self._add_missing_columns()
        # Set by a leased worker: called with the connection at the start of every write
        # transaction of a cycle (``begin()``); raises when this process no longer leads.
        self.fence: Any = None

    def _add_missing_columns(self) -> None:
        """Columns added since a control DB was created (``create_all`` adds tables, not columns)."""
        have = {c["name"] for c in sa.inspect(self.engine).get_columns(notifications_t.name)}
        missing = [c for c in notifications_t.columns if c.name not in have]
        if not missing:
            return
        with self.engine.begin() as c:
            for col in missing:
                kind = col.type.compile(dialect=self.engine.dialect)
                c.execute(sa.text(f"ALTER TABLE {notifications_t.name} ADD COLUMN {col.name} {kind}"))
        log.info("alert_notifications: added column(s) %s", ", ".join(col.name for col in missing))

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ rules and config
    def rule_documents(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(rules_t.c.document).order_by(rules_t.c.name)).all()
        return [r[0] for r in rows]

    def replace_rules(
        self, documents: Iterable[Mapping[str, Any]], *, by: str, now: datetime, prune: bool = False
    ) -> dict[str, list[str]]:
        """Upsert rules by name; with ``prune`` delete the rules not in ``documents``.
        Returns the names added, changed, unchanged and removed."""
        docs = {d["name"]: dict(d) for d in documents}
        out: dict[str, list[str]] = {"added": [], "changed": [], "unchanged": [], "removed": []}
        with self.engine.begin() as c:
            current = {r.name: r.document for r in c.execute(sa.select(rules_t.c.name, rules_t.c.document))}
            for name, doc in docs.items():
                if name not in current:
                    c.execute(rules_t.insert().values(name=name, document=doc, updated_at=now, updated_by=by))
                    out["added"].append(name)
                elif current[name] != doc:
                    c.execute(
                        rules_t.update()
                        .where(rules_t.c.name == name)
                        .values(document=doc, updated_at=now, updated_by=by)
                    )
                    out["changed"].append(name)
                else:
                    out["unchanged"].append(name)
            if prune:
                for name in current:
                    if name not in docs:
                        c.execute(rules_t.delete().where(rules_t.c.name == name))
                        out["removed"].append(name)
        return out

    def delete_rule(self, name: str) -> None:
        with self.engine.begin() as c:
            if c.execute(rules_t.delete().where(rules_t.c.name == name)).rowcount == 0:
                raise NotFound(f"no alert rule named {name!r}")

    def config_sections(self) -> dict[str, Any]:
        with self.engine.connect() as c:
            return {
                r.section: r.document for r in c.execute(sa.select(config_t.c.section, config_t.c.document))
            }

    def set_config_section(self, section: str, document: Any, *, by: str, now: datetime) -> None:
        with self.engine.begin() as c:
            c.execute(config_t.delete().where(config_t.c.section == section))
            c.execute(
                config_t.insert().values(section=section, document=document, updated_at=now, updated_by=by)
            )

    # ------------------------------------------------------------ alerts
    def open_alerts(self) -> list[AlertRecord]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(alerts_t).where(alerts_t.c.state.in_((PENDING, FIRING)))).all()
        return [_record(r) for r in rows]

    def alerts(
        self,
        states: Iterable[str] | None = None,
        *,
        limit: int = 500,
        since: datetime | None = None,
        fired_only: bool = False,
    ) -> list[AlertRecord]:
        q = sa.select(alerts_t).order_by(alerts_t.c.id.desc()).limit(limit)
        if states:
            q = q.where(alerts_t.c.state.in_(tuple(states)))
        if since is not None:
            q = q.where(alerts_t.c.active_since >= since)
        if fired_only:
            q = q.where(alerts_t.c.fired_at.is_not(None))
        with self.engine.connect() as c:
            return [_record(r) for r in c.execute(q).all()]

    def get_alert(self, alert_id: int) -> AlertRecord:
        with self.engine.connect() as c:
            row = c.execute(sa.select(alerts_t).where(alerts_t.c.id == alert_id)).first()
        if row is None:
            raise NotFound(f"no alert with id {alert_id}")
        return _record(row)

    def get_alerts(self, ids: Iterable[int]) -> list[AlertRecord]:
        ids = list(ids)
        if not ids:
            return []
        with self.engine.connect() as c:
            return [_record(r) for r in c.execute(sa.select(alerts_t).where(alerts_t.c.id.in_(ids))).all()]

    def insert_alert(self, rec: AlertRecord, conn: Any = None) -> AlertRecord:
        values = {k: getattr(rec, k) for k in _ALERT_COLUMNS if k != "id"}
        if conn is None:
            with self.engine.begin() as c:
                rec.id = c.execute(alerts_t.insert().values(**values)).inserted_primary_key[0]
        else:
            rec.id = conn.execute(alerts_t.insert().values(**values)).inserted_primary_key[0]
        return rec

    EVALUATOR_COLUMNS = ("state", "value", "fired_at", "last_true_at", "resolved_at", "annotations")

    def update_alert(
        self,
        rec: AlertRecord,
        conn: Any = None,
        columns: Iterable[str] | None = None,
        *,
        only_open: bool = False,
    ) -> bool:
        """Write ``columns`` of ``rec`` (all but id by default): the evaluator writes only its own
        columns, so it never overwrites an acknowledgement made meanwhile by another process, and
        with ``only_open`` never reopens an alert a person resolved meanwhile. True if a row changed."""
        names = [k for k in _ALERT_COLUMNS if k != "id"] if columns is None else list(columns)
        values = {k: getattr(rec, k) for k in names}
        stmt = alerts_t.update().where(alerts_t.c.id == rec.id)
        if only_open:
            stmt = stmt.where(alerts_t.c.state.in_((PENDING, FIRING)))
        stmt = stmt.values(**values)
        if conn is None:
            with self.engine.begin() as c:
                return c.execute(stmt).rowcount > 0
        return conn.execute(stmt).rowcount > 0

    def add_event(
        self,
        alert_id: int,
        at: datetime,
        kind: str,
        *,
        by: str | None = None,
        detail: str | None = None,
        value: float | None = None,
        conn: Any = None,
    ) -> None:
        stmt = events_t.insert().values(
            alert_id=alert_id, at=at, kind=kind, by=by, detail=detail, value=value
        )
        if conn is None:
            with self.engine.begin() as c:
                c.execute(stmt)
        else:
            conn.execute(stmt)

    def events(self, alert_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(events_t)
                .where(events_t.c.alert_id == alert_id)
                .order_by(events_t.c.at, events_t.c.id)
            ).all()
        return [
            {"at": r.at.isoformat(), "kind": r.kind, "by": r.by, "detail": r.detail, "value": r.value}
            for r in rows
        ]

    # ------------------------------------------------------------ silences
    def add_silence(
        self,
        matchers: Iterable[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        *,
        created_by: str,
        comment: str,
        now: datetime,
    ) -> Silence:
        doc = [{"name": m.name, "value": m.value, "op": m.op} for m in matchers]
        with self.engine.begin() as c:
            sid = c.execute(
                silences_t.insert().values(
                    matchers=doc,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    created_by=created_by,
                    comment=comment,
                    created_at=now,
                )
            ).inserted_primary_key[0]
        return self.get_silence(sid)

    def get_silence(self, silence_id: int) -> Silence:
        with self.engine.connect() as c:
            row = c.execute(sa.select(silences_t).where(silences_t.c.id == silence_id)).first()
        if row is None:
            raise NotFound(f"no silence with id {silence_id}")
        return _silence(row)

    def silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        q = sa.select(silences_t).order_by(silences_t.c.id.desc())
        if active_at is not None:
            q = q.where(silences_t.c.starts_at <= active_at, silences_t.c.ends_at > active_at)
        with self.engine.connect() as c:
            return [_silence(r) for r in c.execute(q).all()]

    def update_silence(self, silence_id: int, **values: Any) -> Silence:
        if "matchers" in values:
            values["matchers"] = [{"name": m.name, "value": m.value, "op": m.op} for m in values["matchers"]]
        with self.engine.begin() as c:
            if (
                c.execute(silences_t.update().where(silences_t.c.id == silence_id).values(**values)).rowcount
                == 0
            ):
                raise NotFound(f"no silence with id {silence_id}")
        return self.get_silence(silence_id)

    def delete_silence(self, silence_id: int) -> None:
        with self.engine.begin() as c:
            if c.execute(silences_t.delete().where(silences_t.c.id == silence_id)).rowcount == 0:
                raise NotFound(f"no silence with id {silence_id}")

    # ------------------------------------------------------------ groups
    def groups(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as c:
            return {r.group_key: dict(r._mapping) for r in c.execute(sa.select(groups_t)).all()}

    def save_group(self, group: Mapping[str, Any], conn: Any = None) -> None:
        def run(c: Any) -> None:
            c.execute(groups_t.delete().where(groups_t.c.group_key == group["group_key"]))
            c.execute(groups_t.insert().values(**group))

        if conn is None:
            with self.engine.begin() as c:
                run(c)
        else:
            run(conn)

    def delete_group(self, group_key: str, conn: Any = None) -> None:
        stmt = groups_t.delete().where(groups_t.c.group_key == group_key)
        if conn is None:
            with self.engine.begin() as c:
                c.execute(stmt)
        else:
            conn.execute(stmt)

    # ------------------------------------------------------------ notifications
    def enqueue(
        self,
        *,
        channel: str,
        reason: str,
        group_key: str | None,
        alert_ids: list[int],
        payload: dict[str, Any],
        extra: dict[str, Any] | None,
        now: datetime,
        conn: Any = None,
    ) -> int:
        """Queue a notification; its ``idempotency_key`` is hash(channel, groupKey) + ":" + its id (the
        delivery log's sequence): stable across retries and takeovers, unique per notification."""
        key_src = group_key or str(payload.get("groupKey") or alert_ids)
        n = notifications_t
        stmt = n.insert().values(
            created_at=now,
            channel=channel,
            reason=reason,
            group_key=group_key,
            alert_ids=alert_ids,
            status="pending",
            payload=payload,
            extra=extra or {},
            attempts=0,
            next_attempt_at=now,
        )

        def run(c: Any) -> int:
            nid = int(c.execute(stmt).inserted_primary_key[0])
            key = idempotency_key(channel, key_src, nid)
            c.execute(n.update().where(n.c.id == nid).values(idempotency_key=key))
            return nid

        if conn is None:
            with self.engine.begin() as c:
                return run(c)
        return run(conn)

    def claim_due(
        self,
        now: datetime,
        *,
        holder: str,
        token: int = 0,
        fenced: Any = None,
        claim_for: timedelta = timedelta(seconds=60),
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Claim the due notifications for ``holder``: one conditional UPDATE each (free: never
        claimed, claimed under an older token, or its claim ran out; and ``fenced``, the lease's
        EXISTS clause, still true). Returns the rows claimed; nobody else can claim them meanwhile."""
        n = notifications_t
        free = sa.or_(n.c.claim_token.is_(None), n.c.claim_token < token, n.c.claimed_until <= now)
        with self.engine.connect() as c:
            ids = [
                r[0]
                for r in c.execute(
                    sa.select(n.c.id)
                    .where(n.c.status == "pending", n.c.next_attempt_at <= now, free)
                    .order_by(n.c.id)
                    .limit(limit)
                ).all()
            ]
        claimed: list[int] = []
        for nid in ids:
            cond = [n.c.id == nid, n.c.status == "pending", free]
            if fenced is not None:
                cond.append(fenced)
            with self.engine.begin() as c:
                done = c.execute(
                    n.update()
                    .where(*cond)
                    .values(claimed_by=holder, claim_token=token, claimed_until=now + claim_for)
                ).rowcount
            if done == 1:
                claimed.append(nid)
        if not claimed:
            return []
        with self.engine.connect() as c:
            rows = c.execute(sa.select(n).where(n.c.id.in_(claimed)).order_by(n.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def record_delivery(
        self,
        notification_id: int,
        channel: str,
        *,
        at: datetime,
        ok: bool,
        error: str | None,
        duration_ms: float,
        status: str,
        attempts: int,
        next_attempt_at: datetime,
        holder: str | None = None,
        token: int | None = None,
    ) -> bool:
        """Record one attempt. With ``holder``, only while the claim is still ``holder``'s (same
        token) and the notification pending: else nothing is written and False is returned (another
        worker took it over; its record stands). The claim is released unless it was sent."""
        n = notifications_t
        cond = [n.c.id == notification_id]
        if holder is not None:
            cond += [n.c.status == "pending", n.c.claimed_by == holder]
            cond.append(n.c.claim_token == token if token is not None else n.c.claim_token.is_(None))
        values: dict[str, Any] = dict(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_error=error,
            sent_at=at if ok else None,
        )
        if status != "sent":
            values.update(claimed_by=None, claim_token=None, claimed_until=None)
        with self.engine.begin() as c:
            if c.execute(n.update().where(*cond).values(**values)).rowcount != 1:
                return False
            c.execute(
                deliveries_t.insert().values(
                    notification_id=notification_id,
                    channel=channel,
                    at=at,
                    ok=ok,
                    error=error,
                    duration_ms=duration_ms,
                )
            )
        return True

    def notifications(self, *, limit: int = 200, alert_id: int | None = None) -> list[dict[str, Any]]:
        q = sa.select(notifications_t).order_by(notifications_t.c.id.desc()).limit(limit)
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(q).all()]
        if alert_id is not None:
            rows = [r for r in rows if alert_id in (r["alert_ids"] or [])]
        return rows

    def deliveries(self, *, limit: int = 200, notification_id: int | None = None) -> list[dict[str, Any]]:
        q = sa.select(deliveries_t).order_by(deliveries_t.c.id.desc()).limit(limit)
        if notification_id is not None:
            q = q.where(deliveries_t.c.notification_id == notification_id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q).all()]

    # ------------------------------------------------------------ worker status
    def record_status(self, job: str, at: datetime, duration_s: float, detail: Mapping[str, Any]) -> None:
        with self.engine.begin() as c:
            c.execute(status_t.delete().where(status_t.c.job == job))
            c.execute(status_t.insert().values(job=job, at=at, duration_s=duration_s, detail=dict(detail)))

    def status(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as c:
            return {
                r.job: {"at": r.at.isoformat(), "duration_s": r.duration_s, "detail": r.detail}
                for r in c.execute(sa.select(status_t)).all()
            }

    def status_times(self) -> dict[str, datetime]:
        with self.engine.connect() as c:
            return {r.job: r.at for r in c.execute(sa.select(status_t.c.job, status_t.c.at)).all()}

    @contextmanager
    def begin(self) -> Iterator[Any]:
        """A transaction (``with store.begin() as conn``) to batch writes of one cycle; with a
        ``fence`` set (a leased worker), it is checked first in the same transaction."""
        with self.engine.begin() as conn:
            if self.fence is not None:
                self.fence(conn)
            yield conn


def idempotency_key(channel: str, group_key: str, sequence: int) -> str:
    """``<hash of channel and groupKey>:<sequence>``: ASCII, header-safe, ≤ 40 characters."""
    digest = hashlib.sha256(f"{channel}\n{group_key}".encode()).hexdigest()[:24]
    return f"tg-{digest}:{sequence}"
