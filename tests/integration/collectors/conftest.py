"""Real metric servers for the collectors' integration tests: one influxd and one
victoria-metrics per test session, on free loopback ports in temp dirs, stopped after."""

from __future__ import annotations

import uuid

import pytest

from collectors.localserver import LocalInfluxd, LocalVictoriaMetrics
from collectors.registry import open_store
from tests.services import need_binary
from tests.unit.alerts.fakes import FakeMetricStore


@pytest.fixture(scope="session")
def influxd():
    binary = need_binary("influxd", "influxdb")
    server = LocalInfluxd(binary).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def victoria():
    binary = need_binary("victoria-metrics", "victoria-metrics")
    server = LocalVictoriaMetrics(binary).start()
    yield server
    server.stop()


def influx_v1_url(server, database: str | None = None) -> str:
    return f"influxdb://127.0.0.1:{server.port}/{database or 'tg_' + uuid.uuid4().hex[:10]}?api=v1"


@pytest.fixture(params=["fake", "embedded", "influxdb-v1"])
def store(request, tmp_path):
    """Every MetricStore the contract suite runs against, the unit tests' in-memory fake included."""
    if request.param == "fake":
        s = FakeMetricStore()
    elif request.param == "embedded":
        s = open_store(f"sqlite:///{tmp_path}/metrics.db")
    else:
        server = request.getfixturevalue("influxd")
        s = open_store(influx_v1_url(server))
    yield s
    s.close()
