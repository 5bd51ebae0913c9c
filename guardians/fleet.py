"""Fleet: node heartbeats in the control DB (which nodes run, with which rule version).

A node calls ``beat(...)`` every few seconds. ``nodes(now)`` classifies each node
by the age of its last beat: live (< ``live_s``), stale (< ``gone_s``), gone.
Cluster mode uses the live count to share a threshold when Redis is down.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from common.clock import Clock, SystemClock
from common.sql import create_tables
from guardians.db import as_utc, make_engine

log = logging.getLogger(__name__)

metadata = MetaData()
node_heartbeats = Table(
    "guard_node_heartbeats",
    metadata,
    Column("instance", String(200), primary_key=True),
    Column("address", String(300), nullable=False),
    Column("version", String(100), nullable=False),
    Column("rule_version", Integer, nullable=True),
    Column("last_snapshot_at", DateTime(timezone=True), nullable=True),
    Column("last_beat_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
)
# which canary a node runs (additive: a table of its own, so older control DBs need no migration)
node_canaries = Table(
    "guard_node_canaries",
    metadata,
    Column("instance", String(200), primary_key=True),
    Column("canary_id", Integer, nullable=True),
)

LIVE, STALE, GONE = "live", "stale", "gone"


@dataclass(frozen=True)
class NodeStatus:
    instance: str
    address: str
    version: str
    rule_version: int | None
    last_snapshot_at: datetime | None
    last_beat_at: datetime
    started_at: datetime
    state: str  # live | stale | gone
    age_s: float
    canary: int | None = None  # the canary rule document the node runs (None: the version in force)

    @property
    def last_beat(self) -> datetime:
        return self.last_beat_at

    @property
    def last_seen(self) -> datetime:
        return self.last_beat_at

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("last_snapshot_at", "last_beat_at", "started_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


class Fleet:
    def __init__(
        self, control_db_url: str, *, live_s: float = 5.0, gone_s: float = 30.0, clock: Clock | None = None
    ) -> None:
        if not 0 < live_s < gone_s:
            raise ValueError(f"thresholds: need 0 < live_s < gone_s, got live_s={live_s}, gone_s={gone_s}")
        self.live_s = live_s
        self.gone_s = gone_s
        self.clock = clock or SystemClock()
        self.engine = make_engine(control_db_url)
        create_tables(metadata, self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def beat(
        self,
        instance: str,
        address: str,
        version: str,
        rule_version: int | None,
        last_snapshot_at: datetime | None,
        *,
        at: datetime | None = None,
        canary: int | None = None,
    ) -> None:
        at = at or self.clock.now()
        with self.engine.begin() as c:
            c.execute(delete(node_canaries).where(node_canaries.c.instance == instance))
            if canary is not None:
                c.execute(insert(node_canaries).values(instance=instance, canary_id=canary))
        values = dict(
            address=address,
            version=version,
            rule_version=rule_version,
            last_snapshot_at=last_snapshot_at,
            last_beat_at=at,
        )
        with self.engine.begin() as c:
            n = c.execute(
                update(node_heartbeats).where(node_heartbeats.c.instance == instance).values(**values)
            )
            if n.rowcount:
                return
        try:
            with self.engine.begin() as c:
                c.execute(insert(node_heartbeats).values(instance=instance, started_at=at, **values))
            log.info("node %s (%s) joined the fleet", instance, address)
        except IntegrityError:
            with self.engine.begin() as c:
                c.execute(
                    update(node_heartbeats).where(node_heartbeats.c.instance == instance).values(**values)
                )

    def nodes(self, now: datetime | None = None) -> list[NodeStatus]:
        now = now or self.clock.now()
        with self.engine.connect() as c:
            rows = c.execute(select(node_heartbeats).order_by(node_heartbeats.c.instance)).all()
            running = dict(c.execute(select(node_canaries.c.instance, node_canaries.c.canary_id)).all())
        out = []
        for r in rows:
            beat = as_utc(r.last_beat_at)
            assert beat is not None
            age = max((now - beat).total_seconds(), 0.0)
            state = LIVE if age < self.live_s else STALE if age < self.gone_s else GONE
            out.append(
                NodeStatus(
                    instance=r.instance,
                    address=r.address,
                    version=r.version,
                    rule_version=r.rule_version,
                    last_snapshot_at=as_utc(r.last_snapshot_at),
                    last_beat_at=beat,
                    started_at=as_utc(r.started_at),
                    state=state,
                    age_s=round(age, 3),  # type: ignore[arg-type]
                    canary=running.get(r.instance),
                )
            )
        return out

    def live_count(self, now: datetime | None = None) -> int:
        return sum(1 for n in self.nodes(now) if n.state == LIVE)

    def forget(self, instance: str) -> None:
        with self.engine.begin() as c:
            c.execute(delete(node_heartbeats).where(node_heartbeats.c.instance == instance))
