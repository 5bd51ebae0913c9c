"""``tradeguard node``'s server launch: uvicorn's configuration and the process's runtime tuning."""

from __future__ import annotations

import sys

import pytest

from tradeguard.commands.node import server_config, server_stack, tune_runtime
from tradeguard.settings import load_settings


def test_uvicorn_does_not_believe_forwarded_headers_and_keeps_a_short_backlog() -> None:
    config = server_config(object(), "127.0.0.1", 8123, backlog=load_settings().node_backlog)
    # the guard's TRADEGUARD_TRUSTED_PROXIES decides about X-Forwarded-For, not uvicorn
    assert config.proxy_headers is False
    assert config.backlog == 512 and config.access_log is False
    assert (config.http, config.loop) == ("auto", "auto")
    assert server_stack()[0] in ("httptools", "h11") and server_stack()[1] in ("uvloop", "asyncio")


@pytest.fixture
def switch_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_node_sets_the_gil_switch_interval_from_its_settings(switch_interval, monkeypatch) -> None:
    tune_runtime(load_settings())
    assert sys.getswitchinterval() == pytest.approx(0.0005)  # the default, 10x below Python's
    monkeypatch.setenv("TRADEGUARD_NODE_SWITCH_INTERVAL_MS", "2")
    tune_runtime(load_settings())
    assert sys.getswitchinterval() == pytest.approx(0.002)
