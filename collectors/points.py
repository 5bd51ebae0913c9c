"""The metric schema, point builders and validation, and InfluxDB line-protocol encoding.

Every point tradeguard writes goes through :func:`make_point` (or :func:`validate`), so a
point that reaches the outbox has a known measurement, exactly the measurement's tags
(low-cardinality strings, never order or buyer ids) and finite numeric fields.
See ``collectors/SCHEMA.md`` for the schema as documentation.

Line-protocol encoding lives only here (:func:`encode_line`), escaping per the InfluxDB
line-protocol spec: measurement names escape commas and spaces; tag keys, tag values
and field keys escape commas, equals signs and spaces. All fields are written as floats
(no ``i`` suffix), so a field never changes type between writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from collectors.errors import PointError
from collectors.query import Point


@dataclass(frozen=True)
class MeasurementSchema:
    name: str
    tags: tuple[str, ...]
    fields: tuple[str, ...]
    doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag_set", frozenset(self.tags))
        object.__setattr__(self, "field_set", frozenset(self.fields))


SCHEMA: dict[str, MeasurementSchema] = {
    m.name: m
    for m in (
        MeasurementSchema(
            "resource_stats",
            ("app", "instance", "resource"),
            (
                "pass",
                "block_flow",
                "block_breaker",
                "block_system",
                "block_param",
                "success",
                "error",
                "rt_avg_ms",
                "rt_max_ms",
                "concurrency",
            ),
            "one point per guarded resource per second, from the guardians' snapshot",
        ),
        MeasurementSchema(
            "blocks",
            ("app", "instance", "resource", "rule", "kind", "origin", "param", "value"),
            ("count",),
            "the block log: blocked calls per second by resource, rule, kind, caller origin and limited "
            "parameter value (`param`/`value`: e.g. client_ip/203.0.113.7, sku/FLASH-001; `-` when none); "
            "at most 200 keys a second per node, the rest under value `(other)`",
        ),
        MeasurementSchema(
            "breaker_events",
            ("app", "instance", "resource"),
            ("state", "previous"),
            "one point per circuit-breaker transition; states coded closed=0, open=1, half_open=2",
        ),
        MeasurementSchema(
            "orders",
            ("app", "shop", "channel", "tx_type"),
            ("placed", "paid", "cancelled", "gmv", "paid_amount", "discount", "items"),
            "per shop/channel/tx_type and second; money in currency units (cents / 100)",
        ),
        MeasurementSchema(
            "refunds",
            ("app", "shop"),
            ("requested", "completed", "amount"),
            "per shop and second; amount = completed refunds in currency units",
        ),
        MeasurementSchema(
            "payments",
            ("app", "instance"),
            ("success", "failure", "latency_ms"),
            "per node and second; latency_ms = mean gateway latency of that second",
        ),
        MeasurementSchema(
            "deliveries",
            ("app", "shop", "tx_type", "carrier"),
            ("shipped", "delivered", "received", "auto_received", "failed", "cod_collected", "cod_amount"),
            "per shop/tx_type/carrier and second: sub-orders shipped, delivered, received (auto_received of "
            "them by the job), delivery failed, cash collected on delivery (count; cod_amount in currency "
            "units); carrier is the shipping event's, `-` for the later steps",
        ),
        MeasurementSchema(
            "refusals",
            ("app", "instance", "resource", "reason"),
            ("count",),
            "per node, resource, reason and second: requests the shop refused (409/422 of a DomainError: "
            "out_of_stock, limit, conflict, …); a refused order rolls back, so the journal has no event",
        ),
        MeasurementSchema(
            "host",
            ("app", "instance"),
            ("cpu", "mem", "load"),
            "host metrics (psutil): cpu %, memory used %, 1-minute load average",
        ),
        MeasurementSchema(
            "collector",
            ("app", "instance"),
            ("outbox_depth", "dropped", "quarantined"),
            "the pipeline's own health: outbox depth and cumulative dropped/quarantined points",
        ),
        MeasurementSchema(
            "relay",
            ("app", "instance"),
            ("relay_lag_s", "relay_cursor"),
            "the journal relay, each cycle: age of the oldest event not yet relayed (0 when caught up) "
            "and the id of the last journal row relayed",
        ),
    )
}

BREAKER_STATES: dict[str, int] = {"closed": 0, "open": 1, "half_open": 2}
BREAKER_STATE_NAMES: dict[int, str] = {v: k for k, v in BREAKER_STATES.items()}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- validation


def _check_tag(measurement: str, key: str, value: Any) -> str:
    if type(value) is str and value and "\n" not in value and "\r" not in value and "\\" not in value:
        return value
    if not isinstance(value, str):
        raise PointError(measurement, f"tag {key!r} must be a string, got {type(value).__name__}")
    if value == "":
        raise PointError(measurement, f"tag {key!r} must not be empty")
    if "\n" in value or "\r" in value or "\\" in value:
        raise PointError(measurement, f"tag {key!r} must not contain a newline or a backslash")
    return value


def _check_field(measurement: str, key: str, value: Any) -> float:
    if type(value) is float and math.isfinite(value):  # the common case, fast
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PointError(measurement, f"value {value!r} is not numeric (int or float required)", field=key)
    number = float(value)
    if not math.isfinite(number):
        raise PointError(measurement, f"value {value!r} is not finite (NaN and ±inf are rejected)", field=key)
    return number


def validate(point: Point) -> Point:
    """Check ``point`` against :data:`SCHEMA` and return it normalized (fields as float).

    Raises :class:`PointError` naming the measurement and the offending tag or field.
    """
    schema = SCHEMA.get(point.measurement)
    if schema is None:
        raise PointError(point.measurement, f"unknown measurement; allowed: {', '.join(sorted(SCHEMA))}")
    if point.tags.keys() != schema.tag_set:  # type: ignore[attr-defined]
        tag_keys = set(point.tags)
        missing = sorted(set(schema.tags) - tag_keys)
        extra = sorted(tag_keys - set(schema.tags))
        raise PointError(
            point.measurement,
            f"tags must be exactly {list(schema.tags)} (missing {missing}, not allowed {extra})",
        )
    if not point.fields:
        raise PointError(point.measurement, f"a point needs at least one field of {list(schema.fields)}")
    if not point.fields.keys() <= schema.field_set:  # type: ignore[attr-defined]
        unknown = sorted(set(point.fields) - set(schema.fields))
        raise PointError(
            point.measurement, f"unknown field(s); allowed: {list(schema.fields)}", field=unknown[0]
        )
    m = point.measurement
    tags = {k: _check_tag(m, k, v) for k, v in point.tags.items()}
    isfinite = math.isfinite
    fields = {
        k: v if type(v) is float and isfinite(v) else _check_field(m, k, v) for k, v in point.fields.items()
    }
    _check_time(point.measurement, point.time)
    return Point(point.measurement, tags, fields, point.time)


def _check_time(measurement: str, time: Any) -> None:
    if not isinstance(time, datetime) or time.tzinfo is None:
        raise PointError(measurement, "time must be a timezone-aware datetime (UTC)")


def make_point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, float], time: datetime
) -> Point:
    """Build and validate one point."""
    return validate(Point(measurement, dict(tags), dict(fields), time))


# ---------------------------------------------------------------- builders


def _num(value: Any) -> Any:
    return float(value) if type(value) is int else value


def resource_stats_point(snapshot: Any, *, app: str, instance: str) -> Point:
    """From a ``guardians.snapshot.ResourceSnapshot`` (duck-typed)."""
    s = snapshot
    return make_point(
        "resource_stats",
        {"app": app, "instance": instance, "resource": snapshot.resource},
        {
            "pass": _num(s.passed),
            "block_flow": _num(s.block_flow),
            "block_breaker": _num(s.block_breaker),
            "block_system": _num(s.block_system),
            "block_param": _num(s.block_param),
            "success": _num(s.success),
            "error": _num(s.error),
            "rt_avg_ms": _num(s.rt_avg_ms),
            "rt_max_ms": _num(s.rt_max_ms),
            "concurrency": _num(s.concurrency),
        },
        from_epoch_seconds(snapshot.second),
    )


def block_point(second: int, key: tuple[str, ...], count: int, *, app: str, instance: str) -> Point:
    """A ``blocks`` point from one block-log row (``guardians.blocklog``)."""
    resource, rule, kind, origin, param, value = (_tag(v) for v in key)
    return make_point(
        "blocks",
        {"app": app, "instance": instance, "resource": resource, "rule": rule, "kind": kind,
         "origin": origin, "param": param, "value": value},
        {"count": count},
        from_epoch_seconds(second),
    )


def _tag(v: Any) -> str:
    s = str(v).replace("\n", " ").replace("\\", "/").strip()
    return s or "-"


def breaker_event_point(event: Any, *, app: str, instance: str) -> Point:
    """From a ``guardians.events.BreakerStateChanged`` (duck-typed)."""
    fields = {}
    for key, state in (("state", event.state), ("previous", event.previous)):
        if state not in BREAKER_STATES:
            raise PointError(
                "breaker_events", f"state {state!r} unknown; allowed: {list(BREAKER_STATES)}", field=key
            )
        fields[key] = BREAKER_STATES[state]
    return make_point(
        "breaker_events", {"app": app, "instance": instance, "resource": event.resource}, fields, event.at
    )


def refusal_point(
    *, app: str, instance: str, resource: str, reason: str, count: int | float, second: int
) -> Point:
    """``count`` refusals of ``resource`` for ``reason`` in the epoch ``second`` on node ``instance``."""
    return make_point(
        "refusals",
        {"app": app, "instance": instance, "resource": resource, "reason": reason},
        {"count": _num(count)},
        from_epoch_seconds(second),
    )


def host_point(*, app: str, instance: str, cpu: float, mem: float, load: float, time: datetime) -> Point:
    return make_point(
        "host", {"app": app, "instance": instance}, {"cpu": cpu, "mem": mem, "load": load}, time
    )


# ---------------------------------------------------------------- time helpers


def to_ns(time: datetime) -> int:
    delta = time - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def from_epoch_seconds(second: int | float) -> datetime:
    return _EPOCH + timedelta(seconds=second)


# ---------------------------------------------------------------- line protocol

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def escape_measurement(name: str) -> str:
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    if " " in text or "," in text or "=" in text:
        return text.translate(_KEY_ESCAPES)
    return text


def format_float(value: float) -> str:
    return repr(value) if type(value) is float else repr(float(value))


def encode_line(point: Point) -> str:
    """One point as one line of InfluxDB line protocol, nanosecond precision, tags sorted."""
    parts = [escape_measurement(point.measurement)]
    for key, value in sorted(point.tags.items()):
        if value:  # InfluxDB has no empty tag values
            parts.append(f"{escape_key(key)}={escape_key(value)}")
    head = ",".join(parts)
    fields = ",".join([f"{escape_key(k)}={format_float(v)}" for k, v in point.fields.items()])
    return f"{head} {fields} {to_ns(point.time)}"


def encode_lines(points: Iterable[Point]) -> str:
    return "\n".join(encode_line(p) for p in points)


_UNESCAPED_SPACE = re.compile(r"(?<!\\) ")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_EQUALS = re.compile(r"(?<!\\)=")


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return text.replace("\\ ", " ").replace("\\,", ",").replace("\\=", "=")


def parse_line(line: str) -> Point:
    """The inverse of :func:`encode_line` for lines it wrote (numeric fields, validated tags).

    Validated tags never contain a backslash, so every backslash in such a line is an escape.
    """
    if "\\" not in line:
        head, fields_text, ts = line.split(" ")
        measurement, *tag_parts = head.split(",")
        tags = dict(t.split("=", 1) for t in tag_parts)
        fields = {k: float(v) for k, v in (f.split("=", 1) for f in fields_text.split(","))}
    else:
        head, fields_text, ts = _UNESCAPED_SPACE.split(line)
        measurement, *tag_parts = _UNESCAPED_COMMA.split(head)
        measurement = _unescape(measurement)
        tags = {}
        for part in tag_parts:
            k, v = _UNESCAPED_EQUALS.split(part, maxsplit=1)
            tags[_unescape(k)] = _unescape(v)
        fields = {}
        for part in _UNESCAPED_COMMA.split(fields_text):
            k, v = _UNESCAPED_EQUALS.split(part, maxsplit=1)
            fields[_unescape(k)] = float(v)
    return Point(measurement, tags, fields, from_ns(int(ts)))


def series_key(point: Point) -> tuple[str, tuple[tuple[str, str], ...]]:
    return point.measurement, tuple(sorted(point.tags.items()))
