"""The InfluxDB store against real servers: the influxdb-client v2 write path into
victoria-metrics, quarantine of what influxd rejects, and an unreachable store."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from collectors.errors import StoreRejected, StoreUnavailable
from collectors.localserver import free_port
from collectors.outbox import Flusher, Outbox
from collectors.points import make_point
from collectors.query import Query
from collectors.registry import open_store

from .conftest import influx_v1_url

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


class Clock:
    def now(self):
        return datetime.now(UTC)


def order_points(n: int, shop: str = "shop 1"):
    return [
        make_point(
            "orders",
            {"app": "tg", "shop": shop, "channel": "web", "tx_type": "normal"},
            {"placed": float(i % 3), "gmv": i * 1.25},
            T0 + timedelta(seconds=i),
        )
        for i in range(n)
    ]


def test_v2_write_api_into_victoria_metrics(victoria):
    bucket = "tg_" + uuid.uuid4().hex[:8]
    store = open_store(f"influxdb://127.0.0.1:{victoria.port}/{bucket}?api=v2&org=acme", token="t0ken")
    points = order_points(30)
    store.write(points)
    assert store.health()["reachable"] is True
    httpx.get(f"{victoria.base_url}/internal/force_flush").raise_for_status()
    resp = httpx.get(f"{victoria.base_url}/api/v1/export", params={"match[]": '{__name__="orders_gmv"}'})
    resp.raise_for_status()
    series = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    assert len(series) == 1
    metric = series[0]["metric"]
    assert {k: metric[k] for k in ("app", "shop", "channel", "tx_type")} == {
        "app": "tg",
        "shop": "shop 1",
        "channel": "web",
        "tx_type": "normal",
    }
    got = dict(zip(series[0]["timestamps"], series[0]["values"], strict=True))
    want = {int(p.time.timestamp() * 1000): p.fields["gmv"] for p in points}
    assert got == want
    store.close()


def test_v2_write_to_dead_port_raises_unavailable():
    store = open_store(f"influxdb://127.0.0.1:{free_port()}/b?api=v2&org=o&timeout=2s", token="t")
    with pytest.raises(StoreUnavailable):
        store.write(order_points(1))
    store.close()


def test_influxd_400_is_store_rejected_and_quarantined_without_blocking(influxd, tmp_path):
    db = "tg_" + uuid.uuid4().hex[:8]
    store = open_store(influx_v1_url(influxd, db))
    # a host.cpu written as a string earlier makes influxd refuse our float cpu: HTTP 400 field type conflict
    store.ensure_database()
    httpx.post(
        f"{influxd.base_url}/write",
        params={"db": db},
        content=f'host,app=tg,instance=n1 cpu="hot" {int(T0.timestamp()) * 10**9 - 10**9}',
    ).raise_for_status()
    host = make_point("host", {"app": "tg", "instance": "n1"}, {"cpu": 50.0, "mem": 1.0, "load": 0.5}, T0)
    with pytest.raises(StoreRejected, match="400"):
        store.write([host])

    outbox = Outbox(tmp_path / "outbox.db")
    good = order_points(40)
    outbox.put([*good[:20], host, *good[20:]])
    result = Flusher(outbox, store, clock=Clock(), batch_size=16).flush()
    assert (result.quarantined, result.sent, result.error) == (1, 40, None)
    assert outbox.depth() == 0 and outbox.quarantined() == 1
    [(kept, reason)] = outbox.quarantined_points()
    assert kept == host and "400" in reason
    rows = store.query(Query("orders", ["placed"], T0, T0 + timedelta(minutes=1), aggregate="count"))
    assert rows[0].values["placed"] == 40.0
    outbox.close()
    store.close()


def test_unreachable_influx_keeps_points_and_health_says_so(tmp_path):
    store = open_store(f"influxdb://127.0.0.1:{free_port()}/db?api=v1&timeout=2s")
    health = store.health()
    assert health["reachable"] is False and health["error"]
    outbox = Outbox(tmp_path / "o.db")
    outbox.put(order_points(5))
    result = Flusher(outbox, store, clock=Clock()).flush()
    assert result.sent == 0 and "unreachable" in result.error and outbox.depth() == 5
    outbox.close()
    store.close()


def test_database_is_created_when_missing(influxd):
    db = "tg_" + uuid.uuid4().hex[:8]
    store = open_store(influx_v1_url(influxd, db))
    store.write(order_points(3))
    resp = httpx.post(f"{influxd.base_url}/query", data={"q": "SHOW DATABASES"}).json()
    names = {v[0] for v in resp["results"][0]["series"][0]["values"]}
    assert db in names
    store.close()


def test_node_collection_health_shows_unreachable_influx(tmp_path):
    from collectors.runtime import Collection

    c = Collection(
        open_store(f"influxdb://127.0.0.1:{free_port()}/db?api=v1&timeout=2s"),
        tmp_path / "outbox.db",
        app="tg",
        instance="n1",
        collect_host_metrics=False,
    )
    c.start()  # real APScheduler jobs; nothing here waits on them
    c.outbox.put(order_points(3))
    c.flush()
    health = c.health()
    assert health["status"] == "degraded" and health["running"] is True
    assert health["store"]["reachable"] is False and health["store"]["kind"] == "influxdb"
    assert health["outbox"]["depth"] >= 3 and health["last_flush_error"]
    c.stop(flush=False)
