"""The InfluxDB metric store.

Writes:
- ``api=v2`` (default): influxdb-client's write API in SYNCHRONOUS mode, which raises on
  failure — never the client's own in-memory batching, which drops a batch once its retries
  run out. Works with InfluxDB 2.x, 3.x, Cloud and 1.8+ (token ``user:password``), and with
  anything speaking ``/api/v2/write`` (VictoriaMetrics).
- ``api=v1``: line protocol POSTed to ``/write?db=…&precision=ns`` (InfluxDB 1.x).

Queries: InfluxQL over ``/query``, which 1.x, 2.x (v1 compatibility) and 3.x all answer.
Failures map to :class:`StoreRejected` (HTTP 400: malformed, the outbox quarantines) or
:class:`StoreUnavailable` (everything else: the outbox keeps the points and retries).
Credentials travel in headers only (never in a URL, so never in a log line) and are hidden
from ``repr`` and ``health()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from collectors.errors import QueryError, StoreRejected, StoreUnavailable
from collectors.points import encode_lines, from_ns, to_ns
from collectors.query import Point, Query, Row
from collectors.stores.aggregate import PERCENTILES
from collectors.stores.common import check_query

log = logging.getLogger(__name__)

_FUNCTIONS = {"sum": "SUM", "mean": "MEAN", "max": "MAX", "min": "MIN", "last": "LAST", "count": "COUNT"}


@dataclass(frozen=True)
class InfluxConfig:
    host: str
    port: int
    database: str
    api: str = "v2"
    org: str | None = None
    tls: bool = False
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    retention: timedelta | None = None
    timeout_s: float = 10.0

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def public_url(self) -> str:
        query = (
            f"api={self.api}" + (f"&org={self.org}" if self.org else "") + ("&tls=true" if self.tls else "")
        )
        return f"influxdb://{self.host}:{self.port}/{self.database}?{query}"


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_influxql(q: Query) -> str:
    """Translate the query model to one InfluxQL SELECT (empty buckets omitted: ``fill(none)``)."""
    check_query(q)
    selects = []
    pct = PERCENTILES.get(q.aggregate)
    for f in dict.fromkeys(q.fields):
        if pct is not None:
            expr = f"PERCENTILE({quote_ident(f)}, {pct:g})"
        else:
            expr = f"{_FUNCTIONS[q.aggregate]}({quote_ident(f)})"
        selects.append(f"{expr} AS {quote_ident(f)}")
    where = [f"time >= {to_ns(q.start)}", f"time < {to_ns(q.end)}"]
    where += [f"{quote_ident(k)} = {quote_string(v)}" for k, v in sorted(q.where.items())]
    group = []
    if q.bucket_s:
        group.append(f"time({q.bucket_s}s)")
    group += [quote_ident(g) for g in q.group_by]
    text = f"SELECT {', '.join(selects)} FROM {quote_ident(q.measurement)} WHERE {' AND '.join(where)}"
    if group:
        text += f" GROUP BY {', '.join(group)}"
    if q.bucket_s:
        text += " fill(none)"
    return text


class InfluxStore:
    kind = "influxdb"

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        headers = {}
        auth = None
        if config.token:
            headers["Authorization"] = f"Token {config.token}"
        elif config.user is not None:
            auth = httpx.BasicAuth(config.user, config.password or "")
        self._http = httpx.Client(
            base_url=config.base_url, headers=headers, auth=auth, timeout=config.timeout_s
        )
        self._client = None  # influxdb_client.InfluxDBClient, created on first v2 write
        self._write_api = None
        self._ensured = False
        self._lock = threading.Lock()
        self._last_error: str | None = None
        log.info("InfluxDB metric store %s", config.public_url())

    # ------------------------------------------------------------ database / bucket

    def _v2_token(self) -> str:
        if self.config.token:
            return self.config.token
        if self.config.user is not None:
            return f"{self.config.user}:{self.config.password or ''}"  # InfluxDB 1.8+ compatibility
        return ""

    def _v2(self):
        if self._client is None:
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            self._client = InfluxDBClient(
                url=self.config.base_url,
                token=self._v2_token(),
                org=self.config.org or "-",
                timeout=int(self.config.timeout_s * 1000),
                enable_gzip=True,
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        return self._client

    def ensure_database(self) -> bool:
        """Create the database (v1) or bucket (v2) if missing, where the server allows it."""
        try:
            if self.config.api == "v1":
                stmt = f"CREATE DATABASE {quote_ident(self.config.database)}"
                if self.config.retention:
                    stmt += f" WITH DURATION {int(self.config.retention.total_seconds())}s"
                self._influxql(stmt, db=None)
            else:
                buckets = self._v2().buckets_api()
                if buckets.find_bucket_by_name(self.config.database) is None:
                    from influxdb_client import BucketRetentionRules

                    rules = []
                    if self.config.retention:
                        rules = [
                            BucketRetentionRules(
                                type="expire", every_seconds=int(self.config.retention.total_seconds())
                            )
                        ]
                    buckets.create_bucket(
                        bucket_name=self.config.database, org=self.config.org, retention_rules=rules
                    )
                    log.info("created InfluxDB bucket %s", self.config.database)
            self._ensured = True
        except (
            Exception
        ) as exc:  # not allowed (token scope) or not supported (VictoriaMetrics): writes will tell
            log.warning(
                "could not ensure InfluxDB database/bucket %r exists: %s", self.config.database, _short(exc)
            )
            self._ensured = True  # don't retry on every write; a 404 on write retries it
            return False
        return True

    # ------------------------------------------------------------ write

    def write(self, points: Sequence[Point]) -> None:
        if points:
            self._write_body(encode_lines(points))

    def write_lines(self, lines: Sequence[str]) -> None:
        """Write records already in line protocol (the outbox's format, see ``collectors.points``)."""
        if lines:
            self._write_body("\n".join(lines))

    def _write_body(self, body: str) -> None:
        with self._lock:
            if not self._ensured:
                self.ensure_database()
            try:
                self._write(body)
            except _NotFound:
                self._ensured = False
                self.ensure_database()
                try:
                    self._write(body)
                except _NotFound as exc:
                    raise StoreUnavailable(
                        f"database or bucket {self.config.database!r} not found: {exc}"
                    ) from exc
        self._last_error = None

    def _write(self, body: str) -> None:
        if self.config.api == "v1":
            self._write_v1(body)
        else:
            self._write_v2(body)

    def _write_v1(self, body: str) -> None:
        params = {"db": self.config.database, "precision": "ns"}
        try:
            resp = self._http.post("/write", params=params, content=body.encode())
        except httpx.HTTPError as exc:
            self._last_error = _short(exc)
            raise StoreUnavailable(f"InfluxDB unreachable at {self.config.base_url}: {_short(exc)}") from exc
        self._check_status(resp.status_code, resp.text)

    def _write_v2(self, body: str) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        self._v2()
        try:
            self._write_api.write(
                bucket=self.config.database,
                org=self.config.org or "-",
                record=body,
                write_precision=WritePrecision.NS,
            )
        except ApiException as exc:
            self._check_status(exc.status or 0, exc.body if isinstance(exc.body, str) else str(exc.reason))
        except Exception as exc:  # urllib3 connection errors, timeouts
            self._last_error = _short(exc)
            raise StoreUnavailable(f"InfluxDB unreachable at {self.config.base_url}: {_short(exc)}") from exc

    def _check_status(self, status: int, text: str) -> None:
        if 200 <= status < 300:
            return
        message = f"InfluxDB answered HTTP {status}: {(text or '').strip()[:500]}"
        self._last_error = message
        if status in (400, 413, 422):
            raise StoreRejected(message)
        if status == 404:
            raise _NotFound(message)
        raise StoreUnavailable(message)

    # ------------------------------------------------------------ query

    def _influxql(self, statement: str, *, db: str | None) -> dict:
        data = {"q": statement, "epoch": "ns"}
        if db:
            data["db"] = db
        try:
            resp = self._http.post("/query", data=data)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB unreachable at {self.config.base_url}: {_short(exc)}") from exc
        if resp.status_code >= 500 or resp.status_code in (401, 403):
            raise StoreUnavailable(f"InfluxDB /query answered HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            payload = resp.json()
        except ValueError as exc:
            raise StoreUnavailable(f"InfluxDB /query answered non-JSON HTTP {resp.status_code}") from exc
        if resp.status_code >= 400 and "error" in payload:
            raise QueryError(f"InfluxDB rejected the query: {payload['error']}")
        return payload

    def query(self, query: Query) -> list[Row]:
        statement = to_influxql(query)
        payload = self._influxql(statement, db=self.config.database)
        rows: list[Row] = []
        fields = list(dict.fromkeys(query.fields))
        for result in payload.get("results", []):
            if "error" in result:
                if "not found" in result["error"]:
                    return []
                raise QueryError(f"InfluxDB rejected the query: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags") or {}
                group = {g: tags.get(g, "") for g in query.group_by}
                columns = series["columns"]
                for values in series["values"]:
                    record = dict(zip(columns, values, strict=True))
                    vals = {f: (float(record[f]) if record.get(f) is not None else None) for f in fields}
                    if all(v is None for v in vals.values()):
                        continue
                    time = from_ns(int(record["time"])) if query.bucket_s else query.start
                    rows.append(Row(time=time, tags=group, values=vals))
        rows.sort(key=lambda r: (tuple(r.tags[g] for g in query.group_by), r.time))
        return rows

    # ------------------------------------------------------------ health

    def health(self) -> dict:
        report = {"kind": self.kind, "api": self.config.api, "url": self.config.public_url()}
        try:
            resp = self._http.get("/ping", timeout=2.0)
            if resp.status_code == 404:
                resp = self._http.get("/health", timeout=2.0)
            ok = resp.status_code < 400
            error = None if ok else f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, _short(exc)
        report.update(reachable=ok, error=error or self._last_error)
        return report

    def close(self) -> None:
        self._http.close()
        if self._client is not None:
            try:
                self._write_api.close()
            finally:
                self._client.close()

    def __repr__(self) -> str:
        return f"InfluxStore({self.config.public_url()!r})"


class _NotFound(Exception):
    pass


def _short(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status is not None and hasattr(exc, "reason"):
        return f"HTTP {status} {exc.reason}"
    text = (str(exc) or type(exc).__name__).splitlines()[0]
    return text if len(text) < 300 else text[:300] + "…"
