"""No secret in a log record, an exception text, ``/ops/health`` or a DB row, on every failure path.

A canary secret goes where the settings put credentials (the Redis URL's password, the metrics
token / user / password, the control and trading DB URLs' passwords, unparsable store URLs), each
failure path runs through the real entry points (``build_node`` and its jobs, the collectors'
registry, the cluster, the trading DB, the CLI), and the canary must appear nowhere a person or a
log shipper can read it. Logs are captured at DEBUG, so a library's chatter counts too.

(The alerts' webhook and SMTP paths have their own test under tests/integration/alerts.)
"""

from __future__ import annotations

import logging
import sqlite3
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from collectors.errors import ConfigError
from collectors.registry import open_store
from common.redact import MASK
from domain.adapters.unit_of_work import build_trading_db
from guardians import cluster as cluster_mod
from guardians.store import RuleStore
from tests.services import free_port, need_redis
from tradeguard import cli
from tradeguard.bootstrap import build_node, seed_catalog
from tradeguard.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CANARY = f"canary{uuid.uuid4().hex[:12]}"
CLUSTER_RULES = {"flow": [{"resource": "order.place", "threshold": 50, "cluster": True}]}
ORDER = {
    "buyer_id": "b1",
    "tx_type": "fixed_price",
    "channel": "app",
    "lines": [{"sku": "ELEC-001", "qty": 1}],
    "address": {
        "country": "CN", "province": "Zhejiang", "city": "Hangzhou", "district": "Xihu",
        "street": "1 Lake Road", "recipient": "Li", "phone": "13800000000",
    },
    "idempotency_key": "k1",
}


# ---------------------------------------------------------------------------- checks
def leaks(text: str) -> bool:
    """The canary, as written or URL-encoded, is in ``text``."""
    return CANARY in text or quote(CANARY, safe="") in text


def assert_clean(what: str, text: str) -> None:
    assert not leaks(text), f"the canary secret leaks into {what}:\n{text}"


def assert_exception_clean(exc: BaseException) -> None:
    """The exception's text, its repr, and the traceback as logged (chained causes included)."""
    assert_clean("an exception's text", f"{exc}\n{exc!r}")
    assert_clean("an exception's traceback", "".join(traceback.format_exception(exc)))


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    formatter = logging.Formatter()
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + formatter.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + record.stack_info
        assert_clean(f"the log record of {record.name} ({record.levelname})", text)


def assert_rows_clean(*db_files: Path) -> None:
    """Every column of every row of every table of these SQLite files."""
    checked = 0
    for path in db_files:
        assert path.exists(), f"{path} was not created"
        with sqlite3.connect(path) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in conn.execute(f'SELECT * FROM "{table}"'):
                    checked += 1
                    assert_clean(f"a row of {path.name}:{table}", repr(row))
    assert checked > 0, "no row was written: the DB check proves nothing"


def raised(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except Exception as exc:  # whatever it is, its text must be clean
        return exc
    raise AssertionError("expected the call to fail")


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog
    assert_logs_clean(caplog)


@pytest.fixture
def closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


# ---------------------------------------------------------------------------- the node
def test_a_node_whose_redis_and_metric_store_are_down(clean_env, debug_logs, tmp_path, closed_port):
    """Redis (cluster mode) and InfluxDB unreachable, with the canary as their credentials."""
    s = load_settings(
        var_dir=tmp_path / "var",
        redis_url=f"redis://:{CANARY}@127.0.0.1:{closed_port}/0",
        metrics_url=f"influxdb://127.0.0.1:{closed_port}/tradeguard?api=v2&org=acme&timeout=1s",
        metrics_token=CANARY,
    )
    seed_catalog(s)
    RuleStore(s.control_db).apply(s.app, CLUSTER_RULES, by="test", why="a cluster rule to lease for")
    node = build_node(s, port=18300)
    try:
        assert node.ctx.rule_watcher is not None and node.ctx.rule_watcher.poll_once()
        client = TestClient(node.app)
        assert client.post("/orders", json=ORDER).status_code == 201  # a lease fails: fallback, served
        collection = node.ctx.collection
        assert collection is not None
        collection.tick()
        collection.flush()  # InfluxDB refuses: the points stay in the outbox
        collection.collect_host()
        for job in node.ctx.scheduler.get_jobs():  # heartbeat, chaos poll, timeouts: DB rows
            job.func()
        response = client.get("/ops/health")
        assert_clean("/ops/health", response.text)
        health = response.json()
        assert health["stores"]["cluster"]["mode"] == "fallback"  # the failure paths really ran
        assert health["stores"]["cluster"]["storage"] == f"redis://:{MASK}@127.0.0.1:{closed_port}/0"
        assert health["stores"]["metrics"]["status"] != "ok"
    finally:
        node.stop()
    assert_rows_clean(s.var_dir / "control.db", s.var_dir / "trading.db")


def test_a_node_whose_influxdb_v1_credentials_are_refused(clean_env, debug_logs, tmp_path, closed_port):
    s = load_settings(
        var_dir=tmp_path / "var",
        metrics_url=f"influxdb://127.0.0.1:{closed_port}/tradeguard?api=v1&timeout=1s",
        metrics_user=f"user-{CANARY}",
        metrics_password=CANARY,
    )
    seed_catalog(s)
    node = build_node(s, port=18301)
    try:
        assert node.ctx.collection is not None
        node.ctx.collection.tick()
        node.ctx.collection.flush()
        assert_clean("/ops/health", TestClient(node.app).get("/ops/health").text)
    finally:
        node.stop()
    assert_rows_clean(s.var_dir / "trading.db")


def test_a_node_whose_control_db_is_down(clean_env, debug_logs, tmp_path, closed_port):
    s = load_settings(
        var_dir=tmp_path / "var",
        control_db=f"postgresql://tradeguard:{CANARY}@127.0.0.1:{closed_port}/control",
    )
    seed_catalog(s)
    node = build_node(s, port=18302, collectors=False)
    try:
        response = TestClient(node.app).get("/ops/health")
        assert_clean("/ops/health", response.text)
        assert response.json()["stores"]["control_db"]["status"] == "error"
    finally:
        node.stop()
    assert_rows_clean(s.var_dir / "trading.db")


def test_a_node_whose_trading_db_is_down_fails_to_build_without_the_password(
    clean_env, debug_logs, tmp_path, closed_port
):
    s = load_settings(
        var_dir=tmp_path / "var",
        trading_db=f"postgresql://tradeguard:{CANARY}@127.0.0.1:{closed_port}/trading",
        redis_url=f"redis://:{CANARY}@127.0.0.1:{closed_port}/0",
    )
    exc = raised(lambda: build_node(s, port=18303, collectors=False))
    assert_exception_clean(exc)


# ---------------------------------------------------------------------------- bad URLs
BAD_STORE_URLS = [
    f"influxdb://tg:{CANARY}@127.0.0.1:8086/tradeguard",  # credentials in the URL: refused
    f"influxdb://tg:{CANARY}@127.0.0.1:notaport/tradeguard",
    f"influxdb://tg:{CANARY}@[::1/tradeguard",  # unparsable
    f"influxdb://[{CANARY}/tradeguard",
    f"sqlite://{CANARY}@host/metrics.db",
    f"influxdb://127.0.0.1:8086/tradeguard?token={CANARY}",  # a credential as an option: unknown
    f"sqlite:///var/metrics.db?password={CANARY}",
]


@pytest.mark.parametrize("url", BAD_STORE_URLS)
def test_a_bad_metric_store_url_is_refused_without_its_secret(debug_logs, url):
    exc = raised(lambda: open_store(url, token=CANARY))
    assert isinstance(exc, ConfigError | ValueError)
    assert_exception_clean(exc)


@pytest.mark.parametrize("url", BAD_STORE_URLS[:3])  # a secret where URLs keep their credentials
def test_a_node_with_a_bad_metric_store_url_serves_without_showing_it(
    clean_env, debug_logs, tmp_path, url
):
    s = load_settings(var_dir=tmp_path / "var", metrics_url=url, metrics_token=CANARY)
    seed_catalog(s)
    node = build_node(s, port=18304)
    try:
        response = TestClient(node.app).get("/ops/health")
        assert_clean("/ops/health", response.text)
        assert response.json()["stores"]["metrics"]["status"] == "error"
    finally:
        node.stop()


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{CANARY}@127.0.0.1:notaport/0",
        f"redis://:{CANARY}@[::1/0",
        f"http://:{CANARY}@127.0.0.1:6379/0",
        f"redis://user:{CANARY}@127.0.0.1:6379/0?ssl_cert_reqs=bogus",
    ],
)
def test_a_bad_redis_url_is_refused_without_its_password(debug_logs, url):
    try:
        cl = cluster_mod.connect(url)
    except ValueError as exc:
        assert "redis_url" in str(exc)
        assert_exception_clean(exc)
    else:  # accepted (the URL only fails at first use): nothing it shows holds the password
        assert_clean("the cluster status", repr(cl.status()))
        cl.close()


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://tg:{CANARY}@127.0.0.1:notaport/trading",
        f"postgresql://tg:{CANARY}@[::1/trading",
        f"nosuchdialect://tg:{CANARY}@127.0.0.1/trading",
    ],
)
def test_a_bad_trading_db_url_is_refused_without_its_password(debug_logs, url):
    assert_exception_clean(raised(lambda: build_trading_db(url)))


# ---------------------------------------------------------------------------- Redis refusing us
def test_redis_refusing_the_password_shows_neither_in_logs_nor_in_health(debug_logs):
    base = need_redis()
    url = base.replace("redis://", f"redis://nobody-{uuid.uuid4().hex[:6]}:{CANARY}@", 1)
    cl = cluster_mod.connect(url, namespace=f"t-{uuid.uuid4().hex[:6]}")
    try:
        exc = raised(lambda: cl.take("k:1", 5, 50))
        assert_exception_clean(exc)
        cl.failed(exc)
        cl.maintain()  # the probe fails the same way
        status = cl.status()
        assert status["mode"] == "fallback" and status["last_error"]
        assert_clean("the cluster status", repr(status))
    finally:
        cl.close()


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture
def cli_logging() -> Iterator[None]:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def test_the_health_command_on_a_node_that_is_down(clean_env, cli_logging, capsys, closed_port):
    clean_env.setenv("TRADEGUARD_METRICS_TOKEN", CANARY)
    clean_env.setenv("TRADEGUARD_REDIS_URL", f"redis://:{CANARY}@127.0.0.1:{closed_port}/0")
    clean_env.setenv("TRADEGUARD_NODE_PORT", str(closed_port))
    assert cli.main(["--log-level", "DEBUG", "health", "--timeout", "1"]) == 2
    out = capsys.readouterr()
    assert "no answer" in out.err
    assert_clean("the health command's output", out.out + out.err)


def test_the_health_command_does_not_echo_credentials_of_its_url(clean_env, cli_logging, capsys, closed_port):
    code = cli.main(["health", "--url", f"http://ops:{CANARY}@127.0.0.1:{closed_port}", "--timeout", "1"])
    assert code == 2
    out = capsys.readouterr()
    assert_clean("the health command's output", out.out + out.err)
