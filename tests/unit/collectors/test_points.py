from __future__ import annotations

import math
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from collectors.errors import PointError
from collectors.points import (
    SCHEMA,
    breaker_event_point,
    encode_line,
    make_point,
    parse_line,
    resource_stats_point,
)
from collectors.query import Point

T = datetime(2026, 11, 2, 10, 0, 1, 500000, tzinfo=UTC)
ORDER_TAGS = {"app": "tg", "shop": "s1", "channel": "web", "tx_type": "normal"}


def test_schema_has_exactly_the_issue_measurements_tags_and_fields():
    assert SCHEMA["resource_stats"].tags == ("app", "instance", "resource")
    assert SCHEMA["resource_stats"].fields == (
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
    )
    assert SCHEMA["breaker_events"].fields == ("state", "previous")
    assert SCHEMA["orders"].tags == ("app", "shop", "channel", "tx_type")
    assert SCHEMA["orders"].fields == (
        "placed",
        "paid",
        "cancelled",
        "gmv",
        "paid_amount",
        "discount",
        "items",
    )
    assert SCHEMA["refunds"].tags == ("app", "shop") and SCHEMA["refunds"].fields == (
        "requested",
        "completed",
        "amount",
    )
    assert SCHEMA["payments"].fields == ("success", "failure", "latency_ms")
    assert SCHEMA["host"].fields == ("cpu", "mem", "load")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "12", None, True, [1]])
def test_non_finite_or_non_numeric_field_is_rejected_naming_measurement_and_field(bad):
    with pytest.raises(PointError) as err:
        make_point("orders", ORDER_TAGS, {"placed": 1, "gmv": bad}, T)
    assert err.value.measurement == "orders" and err.value.field == "gmv"
    assert "orders.gmv" in str(err.value)


def test_unknown_measurement_field_and_tags_are_rejected():
    with pytest.raises(PointError, match="unknown measurement"):
        make_point("ordres", ORDER_TAGS, {"placed": 1}, T)
    with pytest.raises(PointError, match="unknown field"):
        make_point("orders", ORDER_TAGS, {"placd": 1}, T)
    with pytest.raises(PointError, match=r"missing \['tx_type'\]"):
        make_point("orders", {k: v for k, v in ORDER_TAGS.items() if k != "tx_type"}, {"placed": 1}, T)
    with pytest.raises(PointError, match=r"not allowed \['order_id'\]"):
        make_point("orders", {**ORDER_TAGS, "order_id": "o-1"}, {"placed": 1}, T)
    with pytest.raises(PointError, match="empty"):
        make_point("orders", {**ORDER_TAGS, "shop": ""}, {"placed": 1}, T)
    with pytest.raises(PointError, match="timezone"):
        make_point("orders", ORDER_TAGS, {"placed": 1}, datetime(2026, 1, 1))


def test_fields_are_normalized_to_float():
    p = make_point("orders", ORDER_TAGS, {"placed": 3}, T)
    assert p.fields == {"placed": 3.0} and isinstance(p.fields["placed"], float)


def test_line_protocol_escaping_per_spec():
    p = Point(
        "my measure,x",
        {"z key": "v,a=l ue", "a": "plain"},
        {"f=1 x": 1.5, "n": 2.0},
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert encode_line(p) == (
        r"my\ measure\,x,a=plain,z\ key=v\,a\=l\ ue f\=1\ x=1.5,n=2.0 1767225600000000000"
    )


def test_line_timestamp_keeps_microseconds():
    p = make_point("orders", ORDER_TAGS, {"placed": 1}, T)
    assert encode_line(p).endswith(" 1793613601500000000")


def test_resource_stats_from_snapshot():
    snap = SimpleNamespace(
        resource="order.place",
        second=1793613601,
        passed=10,
        block_flow=2,
        block_breaker=0,
        block_system=0,
        block_param=1,
        success=9,
        error=1,
        rt_avg_ms=3.5,
        rt_max_ms=20.0,
        rt_min_ms=1.0,
        concurrency=4,
    )
    p = resource_stats_point(snap, app="tg", instance="n1")
    assert p.measurement == "resource_stats"
    assert p.tags == {"app": "tg", "instance": "n1", "resource": "order.place"}
    assert p.fields["pass"] == 10.0 and p.fields["block_param"] == 1.0 and "rt_min_ms" not in p.fields
    assert p.time == datetime(2026, 11, 2, 10, 0, 1, tzinfo=UTC)


def test_breaker_event_states_are_coded():
    ev = SimpleNamespace(resource="payment.charge", previous="closed", state="open", at=T, rule="r1")
    p = breaker_event_point(ev, app="tg", instance="n1")
    assert p.fields == {"state": 1.0, "previous": 0.0}
    with pytest.raises(PointError, match=r"breaker_events\.state"):
        breaker_event_point(SimpleNamespace(**{**ev.__dict__, "state": "ajar"}), app="tg", instance="n1")


@pytest.mark.parametrize(
    "tags",
    [
        {"app": "tg", "instance": "n1", "resource": "order.place"},
        {"app": "t g", "instance": "a,b=c", "resource": "GET /orders/{id} it's \"q\""},
    ],
)
def test_parse_line_inverts_encode_line(tags):
    p = make_point("resource_stats", tags, {"pass": 1.5, "error": 1e-20, "rt_avg_ms": 123456789.125}, T)
    assert parse_line(encode_line(p)) == p


def test_backslash_in_a_tag_is_refused():
    with pytest.raises(PointError, match="backslash"):
        make_point("orders", {**ORDER_TAGS, "shop": "a\\b"}, {"placed": 1}, T)
