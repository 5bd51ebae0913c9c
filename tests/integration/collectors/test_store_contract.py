"""The MetricStore contract: every store (embedded SQLite, real InfluxDB 1.6) reads back
what was written, the same way, through the query model."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from collectors.errors import QueryError, StoreRejected
from collectors.query import Point, Query
from collectors.stores.aggregate import PERCENTILES
from common.stats import percentile

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
SHOPS = ("shop-1", "shop 2,=x")  # the second one needs line-protocol escaping
CHANNELS = ("web", "app")
SECONDS = 40


def _value(i: int, shop: int, ch: int) -> float:
    return round(((i * 7 + shop * 13 + ch * 5) % 17) * 1.25 + shop, 2)


def dataset() -> list[Point]:
    points = []
    for i in range(SECONDS):
        for s, shop in enumerate(SHOPS):
            for c, channel in enumerate(CHANNELS):
                if (i + s + c) % 5 == 0:
                    continue  # gaps, so buckets differ in count
                fields = {"placed": float((i + s) % 4), "gmv": _value(i, s, c)}
                if i % 3 == 0:
                    fields["discount"] = float(i % 7) / 4
                points.append(
                    Point(
                        "orders",
                        {"app": "tg", "shop": shop, "channel": channel, "tx_type": "normal"},
                        fields,
                        T0 + timedelta(seconds=i),
                    )
                )
    return points


def reference(points, q: Query):
    """What any store must answer, computed the obvious way."""
    start, end = q.start, q.end
    cells = defaultdict(lambda: defaultdict(list))
    for p in points:
        if p.measurement != q.measurement or not (start <= p.time < end):
            continue
        if any(p.tags.get(k, "") != v for k, v in q.where.items()):
            continue
        if q.bucket_s:
            epoch = int(p.time.timestamp())
            bt = datetime.fromtimestamp(epoch - epoch % q.bucket_s, UTC)
        else:
            bt = start
        group = tuple(p.tags.get(g, "") for g in q.group_by)
        for f in q.fields:
            if f in p.fields:
                cells[(group, bt)][f].append((p.time, p.fields[f]))
    out = {}
    for key, by_field in cells.items():
        vals = {}
        for f in q.fields:
            series = by_field.get(f, [])
            xs = [v for _, v in series]
            if not xs:
                vals[f] = None
            elif q.aggregate == "sum":
                vals[f] = sum(xs)
            elif q.aggregate == "mean":
                vals[f] = sum(xs) / len(xs)
            elif q.aggregate == "max":
                vals[f] = max(xs)
            elif q.aggregate == "min":
                vals[f] = min(xs)
            elif q.aggregate == "count":
                vals[f] = float(len(xs))
            elif q.aggregate == "last":
                vals[f] = max(series, key=lambda tv: (tv[0], tv[1]))[1]
            else:
                vals[f] = percentile(xs, PERCENTILES[q.aggregate])
        out[key] = vals
    return out


def as_map(rows, q: Query):
    return {(tuple(r.tags[g] for g in q.group_by), r.time): dict(r.values) for r in rows}


def assert_same(actual, expected):
    assert set(actual) == set(expected)
    for key, vals in expected.items():
        for f, v in vals.items():
            got = actual[key][f]
            if v is None:
                assert got is None, (key, f)
            else:
                assert got == pytest.approx(v, rel=1e-9, abs=1e-9), (key, f, got, v)


@pytest.fixture
def loaded(store):
    points = dataset()
    store.write(points[: len(points) // 2])
    store.write(points[len(points) // 2 :])
    return store, points


AGGS = ("sum", "mean", "max", "min", "count", "last", "p50", "p90", "p95", "p99")


@pytest.mark.parametrize("aggregate", AGGS)
def test_aggregates_bucketed_grouped(loaded, aggregate):
    store, points = loaded
    q = Query(
        "orders",
        ["gmv", "placed", "discount"],
        T0,
        T0 + timedelta(seconds=SECONDS),
        aggregate=aggregate,
        bucket_s=10,
        group_by=["shop"],
    )
    rows = store.query(q)
    assert rows, "no rows"
    assert_same(as_map(rows, q), reference(points, q))
    # rows come ordered by group, then time
    assert [(tuple(r.tags.values()), r.time) for r in rows] == sorted(
        (tuple(r.tags.values()), r.time) for r in rows
    )


@pytest.mark.parametrize("aggregate", ("sum", "mean", "max", "count", "last", "p95"))
def test_whole_range_with_tag_filter(loaded, aggregate):
    store, points = loaded
    q = Query(
        "orders",
        ["gmv"],
        T0 + timedelta(seconds=5),
        T0 + timedelta(seconds=33),
        aggregate=aggregate,
        where={"shop": SHOPS[1], "channel": "app"},
    )
    rows = store.query(q)
    assert len(rows) == 1
    assert rows[0].time == q.start
    assert_same(as_map(rows, q), reference(points, q))


def test_group_by_two_tags_unaligned_range(loaded):
    store, points = loaded
    q = Query(
        "orders",
        ["placed"],
        T0 + timedelta(seconds=3),
        T0 + timedelta(seconds=27),
        aggregate="sum",
        bucket_s=7,
        group_by=["shop", "channel"],
    )
    rows = store.query(q)
    assert {r.tags["channel"] for r in rows} == set(CHANNELS)
    assert_same(as_map(rows, q), reference(points, q))


def test_every_point_reads_back_exactly(loaded):
    store, points = loaded
    q = Query(
        "orders",
        ["gmv"],
        T0,
        T0 + timedelta(seconds=SECONDS),
        aggregate="last",
        bucket_s=1,
        where={"shop": SHOPS[0], "channel": "web"},
    )
    got = {r.time: r.values["gmv"] for r in store.query(q)}
    want = {
        p.time: p.fields["gmv"] for p in points if p.tags["shop"] == SHOPS[0] and p.tags["channel"] == "web"
    }
    assert got == want


def test_field_missing_in_a_bucket_is_none(store):
    tags = {"app": "tg", "shop": "s", "channel": "web", "tx_type": "normal"}
    store.write(
        [
            Point("orders", tags, {"placed": 1.0}, T0),
            Point("orders", tags, {"gmv": 2.5}, T0 + timedelta(seconds=10)),
        ]
    )
    q = Query("orders", ["placed", "gmv"], T0, T0 + timedelta(seconds=20), aggregate="sum", bucket_s=10)
    rows = store.query(q)
    assert [(r.time, dict(r.values)) for r in rows] == [
        (T0, {"placed": 1.0, "gmv": None}),
        (T0 + timedelta(seconds=10), {"placed": None, "gmv": 2.5}),
    ]


def test_same_series_and_timestamp_overwrites(store):
    """Replaying a batch is harmless: same measurement+tags+time overwrites (fields merge)."""
    tags = {"app": "tg", "instance": "n1", "resource": "order.place"}
    first = Point("resource_stats", tags, {"pass": 5.0, "error": 1.0}, T0)
    store.write([first])
    store.write([first])
    store.write([Point("resource_stats", tags, {"pass": 7.0, "success": 3.0}, T0)])
    q = Query(
        "resource_stats", ["pass", "error", "success"], T0, T0 + timedelta(seconds=1), aggregate="count"
    )
    assert [dict(r.values) for r in store.query(q)] == [{"pass": 1.0, "error": 1.0, "success": 1.0}]
    q = Query("resource_stats", ["pass", "error", "success"], T0, T0 + timedelta(seconds=1), aggregate="sum")
    assert [dict(r.values) for r in store.query(q)] == [{"pass": 7.0, "error": 1.0, "success": 3.0}]


def test_tag_values_with_quotes_and_backslashes_filter(store):
    weird = 'GET /orders/{id} it\'s "x"'
    tags = {"app": "tg", "instance": "n1", "resource": weird}
    store.write([Point("resource_stats", tags, {"pass": 2.0}, T0)])
    q = Query(
        "resource_stats",
        ["pass"],
        T0,
        T0 + timedelta(seconds=1),
        where={"resource": weird},
        group_by=["resource"],
    )
    rows = store.query(q)
    assert [(r.tags["resource"], r.values["pass"]) for r in rows] == [(weird, 2.0)]


def test_unknown_measurement_or_field_reads_empty(loaded):
    store, _ = loaded
    assert store.query(Query("refunds", ["amount"], T0, T0 + timedelta(minutes=1))) == []
    assert store.query(Query("orders", ["nope"], T0, T0 + timedelta(minutes=1))) == []


def test_outside_time_range_reads_empty(loaded):
    store, _ = loaded
    later = T0 + timedelta(hours=1)
    assert store.query(Query("orders", ["gmv"], later, later + timedelta(minutes=1))) == []


def test_invalid_query_is_refused(store):
    with pytest.raises(QueryError, match="aggregate"):
        store.query(Query("orders", ["gmv"], T0, T0 + timedelta(seconds=1), aggregate="median"))  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="end"):
        store.query(Query("orders", ["gmv"], T0, T0))


def test_health_reports_reachable(store):
    health = store.health()
    assert health["reachable"] is True
    assert health["kind"] in ("fake", "embedded", "influxdb")


def test_large_batch_round_trips(store):
    points = [
        Point(
            "resource_stats",
            {"app": "tg", "instance": "n1", "resource": f"r{r}"},
            {"pass": float(s)},
            T0 + timedelta(seconds=s),
        )
        for s in range(10)
        for r in range(300)
    ]
    store.write(points)
    q = Query("resource_stats", ["pass"], T0, T0 + timedelta(seconds=10), aggregate="sum")
    assert store.query(q)[0].values["pass"] == sum(range(10)) * 300
    q = Query(
        "resource_stats", ["pass"], T0, T0 + timedelta(seconds=10), aggregate="count", group_by=["resource"]
    )
    rows = store.query(q)
    assert len(rows) == 300 and all(r.values["pass"] == 10 for r in rows)


def test_non_finite_value_is_rejected_by_the_store(store):
    bad = Point("orders", {"app": "tg", "shop": "s", "channel": "web", "tx_type": "n"}, {"gmv": math.nan}, T0)
    with pytest.raises((StoreRejected, ValueError)):
        store.write([bad])
