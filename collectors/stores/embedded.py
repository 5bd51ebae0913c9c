"""The embedded metric store: SQLite through SQLAlchemy, no server needed (the default).

Layout (created on demand, one wide table per measurement):

- ``series``: one row per (measurement, tag set), tags as canonical JSON;
- ``"raw:<measurement>"``: ``(series_id, ts)`` primary key (ts in epoch nanoseconds) and one
  REAL column per field. A write upserts and merges fields, so a point with the same
  measurement, tags and timestamp overwrites itself — replaying the outbox is safe,
  exactly as in InfluxDB;
- ``"r1m:<measurement>"``: 1-minute rollups with count, sum, min, max and last of every field;
- ``meta``: the rollup watermark (``dirty_from``) and the raw horizon (oldest raw data kept).

:meth:`EmbeddedStore.maintain` (scheduled by the collection runtime or the worker, driven by
an injected clock) rolls every complete minute that received data since the last run into
the rollup tables, then applies retention: raw points older than ``raw_retention`` and
rollups older than ``rollup_retention`` are deleted. A query over a range older than the raw
horizon reads the rollups (minute resolution; percentiles are not available there and read
as None). Percentiles over raw data are computed in Python with InfluxQL's nearest-rank rule.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from collectors.errors import StoreRejected, StoreUnavailable
from collectors.points import from_ns, to_ns
from collectors.query import Point, Query, Row
from collectors.stores.aggregate import PERCENTILES, Partial
from collectors.stores.common import check_query
from common.clock import SystemClock
from common.stats import percentile

log = logging.getLogger(__name__)

NS = 1_000_000_000
MINUTE_NS = 60 * NS
_NEVER = 2**62
_LAST_COLS = ("n", "s", "lo", "hi", "lt", "lv")


def _q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _raw(measurement: str) -> str:
    return _q(f"raw:{measurement}")


def _r1m(measurement: str) -> str:
    return _q(f"r1m:{measurement}")


def _rc(field: str, part: str) -> str:
    return _q(f"{field}|{part}")


class EmbeddedStore:
    """SQLite metric store. ``url`` is a SQLAlchemy SQLite URL (``sqlite:///var/metrics.db``)."""

    kind = "embedded"

    def __init__(
        self,
        url: str,
        *,
        raw_retention: timedelta = timedelta(hours=6),
        rollup_retention: timedelta = timedelta(days=30),
        clock=None,
    ) -> None:
        self.url = url
        self.raw_retention = raw_retention
        self.rollup_retention = rollup_retention
        self.clock = clock or SystemClock()
        memory = url in ("sqlite://", "sqlite:///:memory:")
        self.engine: Engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )
        event.listen(self.engine, "connect", self._on_connect)
        self._series: dict[tuple[str, str], int] = {}
        self._keys: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._columns: dict[str, set[str]] = {}
        self._lock = threading.RLock()
        self._last_error: str | None = None
        with self._tx() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, measurement TEXT NOT NULL,"
                " tags TEXT NOT NULL, UNIQUE (measurement, tags))"
            )
            conn.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
            )
            conn.exec_driver_sql(f"INSERT OR IGNORE INTO meta VALUES ('dirty_from', {_NEVER})")
            conn.exec_driver_sql("INSERT OR IGNORE INTO meta VALUES ('raw_horizon', 0)")
        log.info(
            "embedded metric store at %s (raw retention %s, rollups %s)", url, raw_retention, rollup_retention
        )

    @staticmethod
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN IMMEDIATE ourselves for writes
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    # ------------------------------------------------------------ plumbing

    class _Tx:
        def __init__(self, store: EmbeddedStore) -> None:
            self.store = store

        def __enter__(self) -> Connection:
            self.store._lock.acquire()
            try:
                self.conn = self.store.engine.connect()
                self.conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.conn

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.conn.exec_driver_sql("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.conn.close()
                self.store._lock.release()

    def _tx(self) -> EmbeddedStore._Tx:
        return EmbeddedStore._Tx(self)

    def _series_id(self, conn: Connection, measurement: str, tags_json: str) -> int:
        key = (measurement, tags_json)
        sid = self._series.get(key)
        if sid is None:
            conn.exec_driver_sql("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)", key)
            sid = conn.exec_driver_sql(
                "SELECT id FROM series WHERE measurement = ? AND tags = ?", key
            ).scalar_one()
            self._series[key] = sid
        return sid

    def _table_columns(self, conn: Connection, measurement: str) -> set[str]:
        rows = conn.exec_driver_sql(f"PRAGMA table_info({_raw(measurement)})").fetchall()
        return {r[1] for r in rows} - {"series_id", "ts"}

    def _ensure_columns(self, conn: Connection, measurement: str, fields: set[str]) -> None:
        known = self._columns.get(measurement)
        if known is not None and fields <= known:
            return
        known = self._table_columns(conn, measurement)
        if (
            not known
            and not conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = ?", (f"raw:{measurement}",)
            ).fetchone()
        ):
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {_raw(measurement)} (series_id INTEGER NOT NULL,"
                " ts INTEGER NOT NULL, PRIMARY KEY (series_id, ts)) WITHOUT ROWID"
            )
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {_r1m(measurement)} (series_id INTEGER NOT NULL,"
                " ts INTEGER NOT NULL, PRIMARY KEY (series_id, ts)) WITHOUT ROWID"
            )
        for f in sorted(fields - known):
            conn.exec_driver_sql(f"ALTER TABLE {_raw(measurement)} ADD COLUMN {_q(f)} REAL")
            for part in _LAST_COLS:
                kind = "INTEGER" if part in ("n", "lt") else "REAL"
                conn.exec_driver_sql(f"ALTER TABLE {_r1m(measurement)} ADD COLUMN {_rc(f, part)} {kind}")
            known.add(f)
        self._columns[measurement] = known

    # ------------------------------------------------------------ write

    def write(self, points: Sequence[Point]) -> None:
        if not points:
            return
        groups: dict[tuple[str, tuple[str, ...]], list[tuple]] = defaultdict(list)
        min_ts = _NEVER
        prepared = []
        keys = self._keys
        for p in points:
            for k, v in p.fields.items():
                if (type(v) is not float or not math.isfinite(v)) and (
                    isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                ):
                    raise StoreRejected(f"{p.measurement}.{k}: value {v!r} is not a finite number")
            ts = to_ns(p.time)
            if ts < min_ts:
                min_ts = ts
            key = (p.measurement, tuple(sorted(p.tags.items())))
            tags_json = keys.get(key)
            if tags_json is None:
                tags_json = json.dumps(dict(key[1]), separators=(",", ":"))
                if len(keys) < 100_000:
                    keys[key] = tags_json
            prepared.append((p, ts, tags_json))
        try:
            with self._tx() as conn:
                for p, ts, tags_json in prepared:
                    names = tuple(sorted(p.fields))
                    sid = self._series_id(conn, p.measurement, tags_json)
                    groups[(p.measurement, names)].append((sid, ts, *(float(p.fields[n]) for n in names)))
                for (measurement, names), rows in groups.items():
                    self._ensure_columns(conn, measurement, set(names))
                    cols = ", ".join(_q(n) for n in names)
                    marks = ", ".join("?" * (len(names) + 2))
                    updates = ", ".join(f"{_q(n)} = excluded.{_q(n)}" for n in names)
                    conn.exec_driver_sql(
                        f"INSERT INTO {_raw(measurement)} (series_id, ts, {cols}) VALUES ({marks})"
                        f" ON CONFLICT (series_id, ts) DO UPDATE SET {updates}",
                        rows,
                    )
                conn.exec_driver_sql(
                    "UPDATE meta SET value = MIN(value, ?) WHERE key = 'dirty_from'", (min_ts,)
                )
        except SQLAlchemyError as exc:
            self._series.clear()
            self._columns.clear()
            self._last_error = str(exc.orig if hasattr(exc, "orig") else exc)
            raise StoreUnavailable(f"embedded store write failed: {self._last_error}") from exc
        self._last_error = None

    # ------------------------------------------------------------ query

    def query(self, query: Query) -> list[Row]:
        check_query(query)
        try:
            with self.engine.connect() as conn:
                return self._query(conn, query)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"embedded store query failed: {exc}") from exc

    def _query(self, conn: Connection, q: Query) -> list[Row]:
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE name = ?", (f"raw:{q.measurement}",)
        ).fetchone()
        if not exists:
            return []
        columns = self._table_columns(conn, q.measurement)
        fields = [f for f in dict.fromkeys(q.fields) if f in columns]
        if not fields:
            return []
        groups: dict[int, tuple[str, ...]] = {}
        for sid, tags_json in conn.exec_driver_sql(
            "SELECT id, tags FROM series WHERE measurement = ?", (q.measurement,)
        ):
            tags = json.loads(tags_json)
            if all(tags.get(k, "") == v for k, v in q.where.items()):
                groups[sid] = tuple(tags.get(g, "") for g in q.group_by)
        if not groups:
            return []
        start_ns, end_ns = to_ns(q.start), to_ns(q.end)
        bucket_ns = q.bucket_s * NS if q.bucket_s else None
        horizon = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'raw_horizon'").scalar_one()
        sids = ",".join(str(s) for s in groups)
        bk = f"(ts / {bucket_ns}) * {bucket_ns}" if bucket_ns else str(start_ns)
        # partials[(group, bucket)][field]
        partials: dict[tuple[tuple[str, ...], int], dict[str, Partial]] = defaultdict(
            lambda: defaultdict(Partial)
        )
        raw_from = max(start_ns, horizon)
        pct = PERCENTILES.get(q.aggregate)
        values: dict[tuple[tuple[str, ...], int], dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        base_where = f"series_id IN ({sids}) AND ts >= ? AND ts < ?"
        if raw_from < end_ns:
            table = _raw(q.measurement)
            if pct is not None:
                cols = ", ".join(_q(f) for f in fields)
                for row in conn.exec_driver_sql(
                    f"SELECT series_id, {bk}, {cols} FROM {table} WHERE {base_where}", (raw_from, end_ns)
                ):
                    cell = values[(groups[row[0]], row[1])]
                    for f, v in zip(fields, row[2:], strict=True):
                        if v is not None:
                            cell[f].append(v)
            elif q.aggregate == "last":
                for f in fields:
                    for sid, b, ts, v in conn.exec_driver_sql(
                        f"SELECT series_id, {bk} AS b, MAX(ts), {_q(f)} FROM {table}"
                        f" WHERE {base_where} AND {_q(f)} IS NOT NULL GROUP BY series_id, b",
                        (raw_from, end_ns),
                    ):
                        partials[(groups[sid], b)][f].add_last(ts, v)
            else:
                aggs = ", ".join(f"COUNT({_q(f)}), SUM({_q(f)}), MIN({_q(f)}), MAX({_q(f)})" for f in fields)
                for row in conn.exec_driver_sql(
                    f"SELECT series_id, {bk} AS b, {aggs} FROM {table}"
                    f" WHERE {base_where} GROUP BY series_id, b",
                    (raw_from, end_ns),
                ):
                    cell = partials[(groups[row[0]], row[1])]
                    for i, f in enumerate(fields):
                        n, s, lo, hi = row[2 + 4 * i : 6 + 4 * i]
                        cell[f].add(n, s, lo, hi)
        roll_to = min(end_ns, horizon)
        if start_ns < roll_to and pct is None:
            table = _r1m(q.measurement)
            cols = ", ".join(", ".join(_rc(f, p) for p in _LAST_COLS) for f in fields)
            for row in conn.exec_driver_sql(
                f"SELECT series_id, {bk}, {cols} FROM {table} WHERE {base_where}", (start_ns, roll_to)
            ):
                cell = partials[(groups[row[0]], row[1])]
                for i, f in enumerate(fields):
                    n, s, lo, hi, lt, lv = row[2 + 6 * i : 8 + 6 * i]
                    if n:
                        cell[f].add(n, s, lo, hi)
                        if lt is not None and lv is not None:
                            cell[f].add_last(lt, lv)
        out: list[Row] = []
        if pct is not None:
            for (group, b), cell in values.items():
                vals = {f: percentile(cell.get(f, []), pct) for f in fields}
                if any(v is not None for v in vals.values()):
                    out.append(self._row(q, group, b, vals))
        else:
            for (group, b), cell in partials.items():
                vals = {f: (cell[f].value(q.aggregate) if f in cell else None) for f in fields}
                if any(v is not None for v in vals.values()):
                    out.append(self._row(q, group, b, vals))
        out.sort(key=lambda r: (tuple(r.tags[g] for g in q.group_by), r.time))
        return out

    @staticmethod
    def _row(q: Query, group: tuple[str, ...], bucket_ns: int, vals: dict[str, float | None]) -> Row:
        time = from_ns(bucket_ns) if q.bucket_s else q.start
        return Row(time=time, tags=dict(zip(q.group_by, group, strict=True)), values=vals)

    # ------------------------------------------------------------ maintenance

    def maintain(self, now: datetime | None = None) -> dict:
        """Roll complete minutes into rollups, then apply retention. Idempotent; safe to run often."""
        now = now or self.clock.now()
        now_ns = to_ns(now)
        cut = (now_ns // MINUTE_NS) * MINUTE_NS
        raw_cutoff = ((now_ns - int(self.raw_retention.total_seconds()) * NS) // MINUTE_NS) * MINUTE_NS
        rollup_cutoff = now_ns - int(self.rollup_retention.total_seconds()) * NS
        report = {"rolled_minutes": 0, "raw_deleted": 0, "rollups_deleted": 0}
        with self._tx() as conn:
            measurements = [
                r[0][4:]
                for r in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'raw:%'"
                )
            ]
            dirty_from = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'dirty_from'").scalar_one()
            if dirty_from < cut:
                lo = (dirty_from // MINUTE_NS) * MINUTE_NS
                report["rolled_minutes"] = (cut - lo) // MINUTE_NS
                for m in measurements:
                    self._rollup(conn, m, lo, cut)
                conn.exec_driver_sql("UPDATE meta SET value = ? WHERE key = 'dirty_from'", (cut,))
            horizon = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'raw_horizon'").scalar_one()
            for m in measurements:
                sids = [
                    r[0] for r in conn.exec_driver_sql("SELECT id FROM series WHERE measurement = ?", (m,))
                ]
                for sid in sids:
                    report["raw_deleted"] += conn.exec_driver_sql(
                        f"DELETE FROM {_raw(m)} WHERE series_id = ? AND ts < ?", (sid, raw_cutoff)
                    ).rowcount
                    report["rollups_deleted"] += conn.exec_driver_sql(
                        f"DELETE FROM {_r1m(m)} WHERE series_id = ? AND ts < ?", (sid, rollup_cutoff)
                    ).rowcount
            if raw_cutoff > horizon:
                conn.exec_driver_sql("UPDATE meta SET value = ? WHERE key = 'raw_horizon'", (raw_cutoff,))
        if any(report.values()):
            log.info("metric maintenance at %s: %s", now.isoformat(), report)
        return report

    def _rollup(self, conn: Connection, measurement: str, lo: int, hi: int) -> None:
        fields = sorted(self._table_columns(conn, measurement))
        if not fields:
            return
        raw, r1m = _raw(measurement), _r1m(measurement)
        minute = f"(ts / {MINUTE_NS}) * {MINUTE_NS}"
        conn.exec_driver_sql(f"DELETE FROM {r1m} WHERE ts >= ? AND ts < ?", (lo, hi))
        cols = ", ".join(", ".join(_rc(f, p) for p in ("n", "s", "lo", "hi")) for f in fields)
        aggs = ", ".join(f"COUNT({_q(f)}), SUM({_q(f)}), MIN({_q(f)}), MAX({_q(f)})" for f in fields)
        conn.exec_driver_sql(
            f"INSERT INTO {r1m} (series_id, ts, {cols}) SELECT series_id, {minute} AS mt, {aggs}"
            f" FROM {raw} WHERE ts >= ? AND ts < ? GROUP BY series_id, mt",
            (lo, hi),
        )
        for f in fields:
            lasts = conn.exec_driver_sql(
                f"SELECT series_id, {minute} AS mt, MAX(ts), {_q(f)} FROM {raw}"
                f" WHERE ts >= ? AND ts < ? AND {_q(f)} IS NOT NULL GROUP BY series_id, mt",
                (lo, hi),
            ).fetchall()
            if lasts:
                conn.exec_driver_sql(
                    f"UPDATE {r1m} SET {_rc(f, 'lt')} = ?, {_rc(f, 'lv')} = ? WHERE series_id = ? AND ts = ?",
                    [(lt, lv, sid, mt) for sid, mt, lt, lv in lasts],
                )

    # ------------------------------------------------------------ health

    def health(self) -> dict:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1").fetchone()
            ok, error = True, self._last_error
        except (SQLAlchemyError, OperationalError) as exc:
            ok, error = False, str(exc)
        return {"kind": self.kind, "url": self.url, "reachable": ok, "error": error}

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"EmbeddedStore({self.url!r})"
