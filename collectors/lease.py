"""A named lease in the control DB with a fencing token, and the heartbeats of the processes holding one.

Who uses it: the journal relay (lease ``journal``, ``collectors/relay.py``) and the worker's leadership
(lease ``worker-leader``, ``tradeguard.bootstrap.Worker``): exactly one worker evaluates alerts,
escalates and delivers notifications at a time; the others stand by and take over when the leader's
lease expires.

Why a control-DB lease and not a PostgreSQL advisory lock (or a Redis lease): the control DB is the
one store every worker already shares, on SQLite (the embedded default, ``tradeguard demo``) and on
PostgreSQL alike; an advisory lock exists only on PostgreSQL, is tied to one connection (a pool that
recycles or loses the connection silently drops leadership, with no token to tell a late writer it
was deposed), and gives no number to fence writes with. Redis is optional in this project. The lease
row gives a **fencing token** that grows on every change of holder: writes of the leader check it in
the same statement or transaction (:meth:`Lease.fence`), so a leader paused past its TTL (GC, a
stopped VM) and then woken can never write over its successor.

Timing: holders renew every ~2 s; a lease lasts ``ttl_s`` (10 s) past its last renewal; standbys try
to take it every ~2 s, so a SIGKILLed leader is replaced within ``ttl_s`` + one poll (≤ 12 s).
The takeover is a compare-and-set on (token, expired) evaluated under the row lock, so of two
standbys racing only one wins, and a renewal committed meanwhile makes both fail.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from common.clock import SystemClock
from common.sql import create_tables

log = logging.getLogger(__name__)

lease_metadata = MetaData()

# The table keeps its first name (the relay's) so existing control DBs need no migration; it holds
# every lease by name.
leases = Table(
    "relay_leases",
    lease_metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("token", BigInteger, nullable=False),  # fencing token: +1 on every change of holder
    Column("expires_at", Float, nullable=False),  # epoch seconds
)

worker_beats = Table(
    "worker_heartbeats",
    lease_metadata,
    Column("holder", String(200), primary_key=True),  # unique per process: instance-<random>
    Column("instance", String(200), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(20), nullable=False),  # leader | standby | stopped
    Column("token", BigInteger),  # the fencing token while leading
    Column("started_at", Float, nullable=False),
    Column("last_beat", Float, nullable=False),  # epoch seconds
)


class LeaseLost(RuntimeError):
    """Another holder has the lease (a newer fencing token): this one must stop writing."""



class Lease:
    """One named lease row; ``acquire()`` renews it or takes it when free or expired.

    ``token`` is the fencing token while this holder leads, else None. ``on_acquire(conn)`` runs in
    the transaction that takes the lease (the relay creates its cursor row there)."""

    def __init__(
        self, engine: Engine, *, name: str, holder: str | None = None, ttl_s: float = 10.0, clock: Any = None
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 seconds, got {ttl_s}")
        self.engine = engine
        self.name = name
        self.holder = holder or f"{name}-{uuid.uuid4().hex[:12]}"
        self.ttl_s = ttl_s
        self.clock = clock or SystemClock()
        self.token: int | None = None
        self.renewed_at: float | None = None  # time.monotonic() of the last successful renewal
        create_tables(lease_metadata, engine)

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _on_acquire(self, conn: Connection) -> None:
        """Hook: runs in the transaction that takes the lease."""

    def _mine(self) -> Any:
        t = leases
        return and_(t.c.name == self.name, t.c.holder == self.holder, t.c.token == self.token)

    def acquire(self) -> int | None:
        """Renew the lease held, or take a free/expired one; the fencing token, or None if another leads."""
        now = self._now()
        t = leases
        if self.token is not None:
            with self.engine.begin() as conn:
                done = conn.execute(
                    update(t).where(self._mine()).values(expires_at=now + self.ttl_s)
                ).rowcount
            if done == 1:
                self.renewed_at = time.monotonic()
                return self.token
            log.warning(
                "%s lost the lease %r (token %s) to another holder", self.holder, self.name, self.token
            )
            self.token = None
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.name == self.name)).first()
        try:
            with self.engine.begin() as conn:
                if row is None:
                    conn.execute(
                        insert(t).values(
                            name=self.name, holder=self.holder, token=1, expires_at=now + self.ttl_s
                        )
                    )
                    token = 1
                elif row.expires_at <= now or row.holder == self.holder:  # expired, or our own past life
                    token = int(row.token) + 1
                    cas = and_(t.c.name == self.name, t.c.token == row.token)
                    if row.holder != self.holder:  # re-checked under the row lock: a renewal wins
                        cas = and_(cas, t.c.expires_at <= now)
                    done = conn.execute(  # compare-and-set: only one of two racing holders wins
                        update(t)
                        .where(cas)
                        .values(holder=self.holder, token=token, expires_at=now + self.ttl_s)
                    ).rowcount
                    if done != 1:
                        return None
                else:
                    return None
                self._on_acquire(conn)
        except IntegrityError:
            return None  # another holder inserted the lease first
        self.token = token
        self.renewed_at = time.monotonic()
        log.info("%s holds the lease %r with fencing token %s", self.holder, self.name, token)
        return token

    def check(self) -> int:
        """Renew the lease right before a write; raises :class:`LeaseLost` if it is no longer ours."""
        token = self.acquire() if self.token is not None else None
        if token is None:
            raise LeaseLost(f"{self.holder} no longer holds the lease {self.name!r}")
        return token

    @property
    def valid(self) -> bool:
        """True while this holder has a token renewed within the TTL (by its own monotonic clock)."""
        return (
            self.token is not None
            and self.renewed_at is not None
            and time.monotonic() - self.renewed_at < self.ttl_s
        )

    def fenced(self) -> Any:
        """An EXISTS clause true only while this holder's token is the lease's (for conditional writes)."""
        return select(leases.c.name).where(self._mine()).exists()

    def fence(self, conn: Connection) -> int:
        """Inside a write transaction: renew the lease (locking its row until commit) or raise
        :class:`LeaseLost`. A takeover cannot commit between this and the transaction's commit."""
        if self.token is None:
            raise LeaseLost(f"{self.holder} does not hold the lease {self.name!r}")
        done = conn.execute(
            update(leases).where(self._mine()).values(expires_at=self._now() + self.ttl_s)
        ).rowcount
        if done != 1:
            token, self.token = self.token, None
            raise LeaseLost(f"{self.holder} lost the lease {self.name!r} (token {token}): write refused")
        return self.token

    def release(self) -> None:
        """Give the lease up at once (a clean stop): a standby takes it at its next poll."""
        if self.token is None:
            return
        with self.engine.begin() as conn:
            conn.execute(update(leases).where(self._mine()).values(expires_at=0.0))
        self.token = None
        self.renewed_at = None

    def status(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(leases).where(leases.c.name == self.name)).first()
        now = self._now()
        return {
            "leader": row.holder if row and row.expires_at > now else None,
            "token": int(row.token) if row else None,
            "expires_in_s": round(row.expires_at - now, 3) if row else None,
        }


class WorkerBeats:
    """The worker heartbeat table: every worker process writes its role and last beat here."""

    def __init__(self, engine: Engine, *, clock: Any = None) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        create_tables(lease_metadata, engine)

    def beat(
        self,
        *,
        holder: str,
        instance: str,
        role: str,
        token: int | None,
        host: str | None = None,
        pid: int | None = None,
        started_at: float | None = None,
    ) -> None:
        now = self.clock.now().timestamp()
        values = {
            "instance": instance,
            "role": role,
            "token": token,
            "last_beat": now,
            "host": host or socket.gethostname(),
            "pid": os.getpid() if pid is None else pid,
        }
        with self.engine.begin() as conn:
            done = conn.execute(
                update(worker_beats).where(worker_beats.c.holder == holder).values(**values)
            ).rowcount
            if done == 0:
                conn.execute(
                    insert(worker_beats).values(holder=holder, started_at=started_at or now, **values)
                )

    def workers(self, *, gone_s: float = 3600.0) -> list[dict[str, Any]]:
        """Workers that beat within ``gone_s``, leader first: holder, instance, host, pid, role, token,
        last_beat (aware datetime), age_s. A leader whose beat is older than 3 × 2 s reads ``stale``."""
        now = self.clock.now().timestamp()
        with self.engine.connect() as conn:
            rows = conn.execute(select(worker_beats).where(worker_beats.c.last_beat >= now - gone_s)).all()
        out = []
        for r in rows:
            age = max(0.0, now - r.last_beat)
            out.append(
                {
                    "holder": r.holder,
                    "instance": r.instance,
                    "host": r.host,
                    "pid": int(r.pid),
                    "role": r.role,
                    "token": r.token,
                    "started_at": datetime.fromtimestamp(r.started_at, UTC),
                    "last_beat": datetime.fromtimestamp(r.last_beat, UTC),
                    "age_s": round(age, 3),
                }
            )
        order = {"leader": 0, "standby": 1}
        return sorted(out, key=lambda w: (order.get(w["role"], 2), w["age_s"], w["holder"]))

    def leader(self, name: str = "worker-leader") -> str | None:
        """The holder of the live lease ``name``, or None."""
        now = self.clock.now().timestamp()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            ).first()
        return row.holder if row is not None and row.expires_at > now else None

    def forget(self, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(worker_beats).where(worker_beats.c.holder == holder))
