from __future__ import annotations

import math

import pytest

from tradeguard import cli
from tradeguard.chaos import ChaosError, ChaosPoller, ChaosSettings, ChaosStore, parse_on_off


class FakeGateway:
    def __init__(self, base_latency_ms: float = 0) -> None:
        self.calls: list[dict] = []
        self.base = base_latency_ms

    def settings(self):
        return {"latency_ms": self.base, "error_rate": 0.0, "outage": False}

    def configure(self, *, latency_ms=0, error_rate=0.0, outage=False):
        self.calls.append({"latency_ms": latency_ms, "error_rate": error_rate, "outage": outage})


@pytest.fixture
def store(tmp_path):
    s = ChaosStore(f"sqlite:///{tmp_path}/sub/control.db")
    yield s
    s.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency_ms": -1}, "latency_ms must be from 0 to 60000"),
        ({"latency_ms": 60_001}, "latency_ms must be from 0 to 60000"),
        ({"latency_ms": 1.5}, "latency_ms must be an integer"),
        ({"error_rate": 1.01}, "error_rate must be from 0.0 to 1.0"),
        ({"error_rate": -0.1}, "error_rate must be from 0.0 to 1.0"),
        ({"error_rate": math.nan}, "error_rate must be from 0.0 to 1.0"),
        ({"error_rate": "x"}, "error_rate must be a number"),
        ({"outage": "yes"}, "outage must be true or false"),
    ],
)
def test_out_of_range_settings_name_the_field_and_range(kwargs, message):
    with pytest.raises(ChaosError, match=message):
        ChaosSettings(**kwargs)


def test_on_off_parsing():
    assert parse_on_off("on") is True and parse_on_off("OFF") is False
    with pytest.raises(ChaosError, match="outage must be on or off"):
        parse_on_off("maybe")


def test_store_starts_calm_and_keeps_unchanged_fields(store):
    assert store.read() == (ChaosSettings(), 0)
    store.set(latency_ms=250, error_rate=0.5, by="sre")
    assert store.read() == (ChaosSettings(latency_ms=250, error_rate=0.5), 1)
    store.set(outage=True)
    settings, version = store.read()
    assert settings == ChaosSettings(latency_ms=250, error_rate=0.5, outage=True) and version == 2
    assert store.reset().is_calm
    assert store.read()[1] == 3


def test_invalid_set_changes_nothing(store):
    store.set(latency_ms=10)
    with pytest.raises(ChaosError):
        store.set(error_rate=2.0)
    assert store.get() == ChaosSettings(latency_ms=10)


def test_unknown_target_is_rejected(store):
    with pytest.raises(ChaosError, match="chaos target must be one of payment"):
        store.get("database")


def test_poller_configures_the_gateway_only_on_change(store, tmp_path):
    gateway = FakeGateway()
    seen = []
    poller = ChaosPoller(store, gateway, on_change=seen.append)
    assert poller.poll() is True  # first read applies the (calm) settings
    assert poller.poll() is False
    # a second process (the CLI) writes through its own engine
    other = ChaosStore(store.url)
    other.set(error_rate=0.5, latency_ms=100)
    other.close()
    assert poller.poll() is True
    assert gateway.calls[-1] == {"latency_ms": 100, "error_rate": 0.5, "outage": False}
    assert poller.poll() is False
    assert len(gateway.calls) == 2 and seen[-1].error_rate == 0.5
    assert poller.status()["status"] == "ok"


def test_poller_keeps_settings_when_the_store_breaks(store):
    gateway = FakeGateway()
    poller = ChaosPoller(store, gateway)
    store.set(latency_ms=5)
    poller.poll()
    store.engine.dispose()

    def broken(target="payment"):
        raise OSError("disk gone")

    store.read = broken  # type: ignore[method-assign]
    assert poller.poll() is False
    status = poller.status()
    assert status["status"] == "error" and "disk gone" in status["error"]
    assert status["settings"]["latency_ms"] == 5


def test_cli_sets_validates_and_resets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRADEGUARD_CONTROL_DB", f"sqlite:///{tmp_path}/control.db")
    argv = ["chaos", "payment", "--latency-ms", "300", "--error-rate", "0.25", "--outage", "on"]
    assert cli.main(argv) == 0
    s = ChaosStore(f"sqlite:///{tmp_path}/control.db")
    assert s.get() == ChaosSettings(latency_ms=300, error_rate=0.25, outage=True)
    assert cli.main(["chaos", "payment", "--error-rate", "3"]) == 2
    assert "error_rate must be from 0.0 to 1.0" in capsys.readouterr().err
    assert cli.main(["chaos", "payment", "--reset", "--latency-ms", "1"]) == 2
    assert cli.main(["chaos", "payment", "--reset"]) == 0
    assert s.get().is_calm
    s.close()


def test_latency_is_added_to_the_gateway_own_latency(store):
    gateway = FakeGateway(base_latency_ms=20)
    poller = ChaosPoller(store, gateway)
    store.set(latency_ms=500)
    poller.poll()
    assert gateway.calls[-1]["latency_ms"] == 520
    store.reset()
    poller.poll()
    assert gateway.calls[-1] == {"latency_ms": 20, "error_rate": 0.0, "outage": False}
