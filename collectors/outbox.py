"""The durable outbox: every point is written to an on-disk SQLite queue first, as one line
of InfluxDB line protocol (``collectors.points.encode_line``) — InfluxDB gets the records as
they are (``write_lines``), other stores get them parsed back into points.

A :class:`Flusher` sends the oldest points in batches to the metric store and deletes
them only after the store accepted them, so a crash (even ``kill -9``) between send and
delete just replays the batch — harmless, because a point with the same measurement,
tags and timestamp overwrites itself in every store.

Durability: the queue runs in WAL mode. With ``durability="normal"`` (the default,
``PRAGMA synchronous=NORMAL``) a committed ``put`` survives the death of the process
(kill -9): the WAL frames are in the kernel before commit returns; only an OS crash or
power loss may roll back the last commits. ``durability="full"`` fsyncs the WAL on every
commit and also survives power loss, at the price of one fsync per put.

Bounded: past ``max_points`` the oldest points not currently being sent are dropped,
counted (persistently) and reported. A batch the store rejects as malformed
(:class:`~collectors.errors.StoreRejected`, HTTP 400) is bisected down to the offending
points, which are moved to a quarantine table (kept and counted) so they never block
the rest.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from collectors.errors import ConfigError, StoreRejected
from collectors.points import encode_line, parse_line, validate
from collectors.query import MetricStore, Point
from common.redact import redact_text

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""

DURABILITY = {"normal": "NORMAL", "full": "FULL"}


class Outbox:
    """A bounded, durable FIFO of points (one per node process; thread-safe)."""

    def __init__(
        self, path: str | os.PathLike[str], *, max_points: int = 2_000_000, durability: str = "normal"
    ):
        if durability not in DURABILITY:
            raise ConfigError(f"outbox durability {durability!r} invalid; allowed: {sorted(DURABILITY)}")
        if max_points < 1:
            raise ConfigError(f"outbox max_points must be >= 1, got {max_points}")
        self.path = os.fspath(path)
        self.max_points = max_points
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
        self._db.executescript(_SCHEMA)
        self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._inflight_max = 0
        log.info(
            "outbox %s opened: %d points pending, cap %d, durability %s",
            self.path,
            self._depth,
            max_points,
            durability,
        )

    # -- writing

    def put(self, points: Sequence[Point], *, validated: bool = False) -> int:
        """Validate and durably enqueue ``points``; returns how many were enqueued.

        Raises :class:`~collectors.errors.PointError` (and enqueues nothing) if any point is invalid.
        ``validated=True`` skips the check for points built by ``collectors.points.make_point``.
        """
        if not points:
            return 0
        records = [(encode_line(p if validated else validate(p)),) for p in points]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO outbox (record) VALUES (?)", records)
                self._depth += len(records)
                excess = self._depth - self.max_points
                if excess > 0:
                    cur = self._db.execute(
                        "DELETE FROM outbox WHERE id IN"
                        " (SELECT id FROM outbox WHERE id > ? ORDER BY id LIMIT ?)",
                        (self._inflight_max, excess),
                    )
                    dropped = cur.rowcount
                    self._depth -= dropped
                    self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (dropped,))
                else:
                    dropped = 0
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                raise
        if dropped:
            log.warning("outbox full (cap %d): dropped the %d oldest points", self.max_points, dropped)
        return len(records)

    # -- reading (used by the flusher)

    def peek_lines(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` records (line protocol) with their ids; marks them in flight."""
        with self._lock:
            rows = self._db.execute("SELECT id, record FROM outbox ORDER BY id LIMIT ?", (limit,)).fetchall()
            if rows:
                self._inflight_max = max(self._inflight_max, rows[-1][0])
        return rows

    def peek(self, limit: int) -> list[tuple[int, Point]]:
        """The oldest ``limit`` points with their ids; marks them in flight (not droppable)."""
        return [(rid, parse_line(rec)) for rid, rec in self.peek_lines(limit)]

    def ack(self, ids: Sequence[int]) -> int:
        """Delete points the store accepted."""
        if not ids:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            n = self._delete_ids(ids)
            self._db.execute("COMMIT")
            self._depth -= n
        return n

    def quarantine(self, entries: Sequence[tuple[int, str]], reason: str, at: datetime) -> int:
        """Move rejected points out of the queue into the quarantine table (kept for inspection)."""
        if not entries:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO quarantine (record, reason, at) VALUES (?, ?, ?)",
                [(line, reason[:2000], at.isoformat()) for _, line in entries],
            )
            n = self._delete_ids([rid for rid, _ in entries])
            self._db.execute("COMMIT")
            self._depth -= n
        return n

    def release(self) -> None:
        """Nothing is in flight any more (the flusher finished or failed a round)."""
        with self._lock:
            self._inflight_max = 0

    def _delete_ids(self, ids: Sequence[int]) -> int:
        total = 0
        chunk = 900
        for i in range(0, len(ids), chunk):
            part = list(ids[i : i + chunk])
            if len(part) == part[-1] - part[0] + 1 and part == sorted(part):
                cur = self._db.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?", (part[0], part[-1]))
            else:
                marks = ",".join("?" * len(part))
                cur = self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", part)
            total += cur.rowcount
        return total

    # -- state

    def depth(self) -> int:
        return self._depth

    def dropped(self) -> int:
        with self._lock:
            return self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]

    def quarantined(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]

    def quarantined_points(self, limit: int = 100) -> list[tuple[Point, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT record, reason FROM quarantine ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(parse_line(r), reason) for r, reason in rows]

    def stats(self) -> dict:
        return {
            "depth": self.depth(),
            "max_points": self.max_points,
            "dropped": self.dropped(),
            "quarantined": self.quarantined(),
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class FlushResult:
    sent: int = 0
    quarantined: int = 0
    batches: int = 0
    error: str | None = None
    remaining: int = 0


@dataclass
class FlushState:
    last_success_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    sent_total: int = 0
    history: list[str] = field(default_factory=list)


class Flusher:
    """Moves points from the outbox to the store, oldest first, deleting only what was accepted."""

    def __init__(self, outbox: Outbox, store: MetricStore, *, clock, batch_size: int = 5000) -> None:
        if batch_size < 1:
            raise ConfigError(f"flush batch_size must be >= 1, got {batch_size}")
        self.outbox = outbox
        self.store = store
        self.clock = clock
        self.batch_size = batch_size
        self.state = FlushState()
        self._lock = threading.Lock()

    def flush(self, *, max_batches: int | None = None) -> FlushResult:
        """Send batches until the outbox is empty, the store fails, or ``max_batches`` were sent."""
        result = FlushResult()
        with self._lock:
            try:
                while max_batches is None or result.batches < max_batches:
                    entries = self.outbox.peek_lines(self.batch_size)
                    if not entries:
                        break
                    self.state.last_attempt_at = self.clock.now()
                    try:
                        self._send(entries, result)
                    except Exception as exc:  # StoreUnavailable or anything unexpected: keep, retry later
                        result.error = redact_text(f"{type(exc).__name__}: {exc}")  # in /ops/health
                        self.state.last_error = result.error
                        self.state.consecutive_failures += 1
                        if (
                            self.state.consecutive_failures in (1, 10)
                            or self.state.consecutive_failures % 100 == 0
                        ):
                            log.warning(
                                "flush failed (%d in a row), %d points kept: %s",
                                self.state.consecutive_failures,
                                self.outbox.depth(),
                                result.error,
                            )
                        break
                    result.batches += 1
                    self.state.last_success_at = self.clock.now()
                    if self.state.consecutive_failures:
                        log.info(
                            "store reachable again after %d failed flushes", self.state.consecutive_failures
                        )
                    self.state.consecutive_failures = 0
                    self.state.last_error = None
            finally:
                self.outbox.release()
        self.state.sent_total += result.sent
        result.remaining = self.outbox.depth()
        return result

    def _write(self, entries: list[tuple[int, str]]) -> None:
        write_lines = getattr(self.store, "write_lines", None)
        if write_lines is not None:  # InfluxDB: the records are already its wire format
            write_lines([line for _, line in entries])
        else:
            self.store.write([parse_line(line) for _, line in entries])

    def _send(self, entries: list[tuple[int, str]], result: FlushResult) -> None:
        try:
            self._write(entries)
        except StoreRejected as exc:
            if len(entries) == 1:
                n = self.outbox.quarantine(entries, str(exc), self.clock.now())
                result.quarantined += n
                log.error("quarantined 1 point the store rejected as malformed: %s", exc)
                return
            mid = len(entries) // 2
            self._send(entries[:mid], result)
            self._send(entries[mid:], result)
            return
        result.sent += self.outbox.ack([rid for rid, _ in entries])
