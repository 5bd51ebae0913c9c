from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.errors import ConfigError
from collectors.query import Query
from collectors.registry import open_store
from collectors.stores.embedded import EmbeddedStore
from collectors.stores.influx import InfluxStore, to_influxql


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("mysql://x/y", "scheme 'mysql' unknown; allowed: sqlite, influxdb"),
        ("influxdb://host:8086/db?api=v3", "api='v3' invalid; allowed: v1, v2"),
        ("influxdb://host:8086/", "database or bucket"),
        ("influxdb://host:8086/a/b", "exactly one path segment"),
        ("influxdb:///db", "needs a host"),
        ("influxdb://host:port/db", "port invalid"),
        ("influxdb://u:secret@host:8086/db", "do not put credentials"),
        ("influxdb://host:8086/db?tls=maybe", "tls='maybe' invalid"),
        ("influxdb://host:8086/db?colour=red", "unknown; allowed"),
        ("influxdb://host:8086/db?retention=forever", "retention='forever' is not a positive duration"),
        ("sqlite:///x.db?raw_retention=0h", "raw_retention"),
        ("sqlite:///x.db?journal=wal", "unknown for sqlite"),
    ],
)
def test_bad_urls_raise_one_clear_config_error(url, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        open_store(url)
    assert message in str(err.value)
    assert "secret" not in str(err.value)


def test_half_credentials_refused():
    with pytest.raises(ConfigError, match="both"):
        open_store("influxdb://h:8086/db", user="u")


def test_embedded_by_sqlite_url_or_bare_path(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/sub/m.db?raw_retention=2h")
    assert isinstance(s, EmbeddedStore) and s.raw_retention == timedelta(hours=2)
    s.close()
    s = open_store(str(tmp_path / "other.db"))
    assert isinstance(s, EmbeddedStore)
    s.close()


def test_influx_url_and_secrets_hidden():
    s = open_store("influxdb://db.example:9999/tg?api=v2&org=acme&tls=true", token="tok-SECRET")
    assert isinstance(s, InfluxStore)
    assert s.config.base_url == "https://db.example:9999" and s.config.org == "acme"
    assert "SECRET" not in repr(s) and "SECRET" not in repr(s.config)
    assert "SECRET" not in str(s.health())
    s.close()


def test_influxql_translation_quotes_everything():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    q = Query(
        "orders",
        ["gmv", 'we"ird'],
        t0,
        t0 + timedelta(minutes=1),
        aggregate="p95",
        bucket_s=10,
        where={"shop": "it's"},
        group_by=["shop"],
    )
    assert to_influxql(q) == (
        'SELECT PERCENTILE("gmv", 95) AS "gmv", PERCENTILE("we\\"ird", 95) AS "we\\"ird" FROM "orders"'
        " WHERE time >= 1767225600000000000 AND time < 1767225660000000000 AND \"shop\" = 'it\\'s'"
        ' GROUP BY time(10s), "shop" fill(none)'
    )
