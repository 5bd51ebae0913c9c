"""A real ``tradeguard node`` process on a free port, SQLite files in tmp_path, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

pytestmark = pytest.mark.e2e

ADDRESS = {
    "country": "CN",
    "province": "Zhejiang",
    "city": "Hangzhou",
    "district": "Xihu",
    "street": "1 Lake Road",
    "recipient": "Li Lei",
    "phone": "13800000000",
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tradeguard.cli", *args]


@dataclass
class RunningNode:
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[str]
    log_path: Path


OPS_TOKEN = "e2e-ops-token"
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}


def node_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADEGUARD_") or k == "TRADEGUARD_REQUIRE_SERVICES"
    }
    env.update(
        TRADEGUARD_VAR_DIR=str(tmp / "var"),
        TRADEGUARD_METRICS_URL=f"sqlite:///{tmp}/var/metrics.db",
        TRADEGUARD_PAYMENT_TIMEOUT_S="900",
        TRADEGUARD_OPS_TOKEN=OPS_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    return env


def wait_healthy(url: str, proc: subprocess.Popen[str], log_path: Path, timeout: float = 45.0) -> dict:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"node exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            r = httpx.get(f"{url}/ops/health", timeout=2)
            if r.status_code == 200:
                return r.json()
            last = r.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    pytest.fail(f"node not healthy after {timeout} s: {last}\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[RunningNode]:
    tmp = tmp_path_factory.mktemp("node")
    env = node_env(tmp)
    seeded = subprocess.run(cli("seed"), env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stderr
    port = free_port()
    log_path = tmp / "node.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            cli("node", "--port", str(port)),
            env=env,
            cwd=tmp,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log_path)
        yield RunningNode(url=url, env=env, proc=proc, log_path=log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="module")
def catalog(node: RunningNode) -> dict[str, list[dict]]:
    shops = httpx.get(f"{node.url}/shops").raise_for_status().json()
    assert len(shops) >= 2
    products = {
        s["id"]: httpx.get(f"{node.url}/shops/{s['id']}/products").raise_for_status().json() for s in shops
    }
    assert all(products.values())
    return products


def regular_skus(catalog: dict[str, list[dict]]) -> list[dict]:
    return [p for ps in catalog.values() for p in ps if p["available"] > 50]


def place(node: RunningNode, lines: list[dict], tx_type: str = "fixed_price", buyer: str | None = None):
    body = {
        "buyer_id": buyer or f"e2e-{uuid.uuid4().hex[:8]}",
        "tx_type": tx_type,
        "channel": "web",
        "lines": lines,
        "address": ADDRESS,
        "idempotency_key": uuid.uuid4().hex,
    }
    return httpx.post(f"{node.url}/orders", json=body, timeout=10)


def test_health_reports_each_store(node: RunningNode):
    health = httpx.get(f"{node.url}/ops/health").json()
    assert health["status"] == "ok", health  # every store of this node is up (cluster and relay: absent)
    assert health["stores"]["trading_db"]["status"] == "ok"
    assert health["stores"]["control_db"]["status"] == "ok"
    assert "metrics" in health["stores"] and "payment_chaos" in health["stores"]
    assert health["node"]["parts"]["trading_core"] == "on"


def test_place_pay_refund_over_http(node: RunningNode, catalog):
    p1, p2 = regular_skus(catalog)[:2]
    r = place(node, [{"sku": p1["sku"], "qty": 2}, {"sku": p2["sku"], "qty": 1}])
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "pending_payment"
    assert order["amount_cents"] > 0
    paid = httpx.post(f"{node.url}/orders/{order['id']}/pay", timeout=10)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    refund = httpx.post(
        f"{node.url}/orders/{order['id']}/refunds", json={"lines": [{"sku": p1["sku"], "qty": 1}]}, timeout=10
    )
    assert refund.status_code in (200, 201), refund.text
    assert refund.json()["amount_cents"] > 0
    got = httpx.get(f"{node.url}/orders/{order['id']}").json()
    assert got["id"] == order["id"]


def test_cancel_releases_the_order(node: RunningNode, catalog):
    sku = regular_skus(catalog)[0]["sku"]
    order = place(node, [{"sku": sku, "qty": 1}]).json()
    r = httpx.post(f"{node.url}/orders/{order['id']}/cancel", json={"reason": "buyer"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    again = httpx.post(f"{node.url}/orders/{order['id']}/pay", timeout=10)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


def test_errors_are_problem_json(node: RunningNode):
    r = place(node, [{"sku": "NO-SUCH-SKU", "qty": 1}])
    assert r.status_code == 422  # a SKU the catalog lacks is an invalid body (domain.api.problems.status_for)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "NO-SUCH-SKU" in r.text


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_a_chaos_change_reaches_the_running_node_within_two_seconds(node: RunningNode, catalog):
    sku = regular_skus(catalog)[0]["sku"]
    out = subprocess.run(
        cli("chaos", "payment", "--error-rate", "1.0"),
        env=node.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    changed_at = time.monotonic()

    def applied() -> bool:
        status = httpx.get(f"{node.url}/ops/chaos/payment").json()
        return (status.get("applied") or {}).get("settings", {}).get("error_rate") == 1.0

    # nodes poll the chaos settings every second (TRADEGUARD_CHAOS_POLL_S): expect it well within 2 s,
    # allow slack for a loaded CI machine
    assert wait_for(applied, timeout=4.0), (
        f"not applied {time.monotonic() - changed_at:.1f} s after the change"
    )
    order = place(node, [{"sku": sku, "qty": 1}]).json()
    failed = httpx.post(f"{node.url}/orders/{order['id']}/pay", timeout=10)
    assert failed.status_code == 402, failed.text

    reset = subprocess.run(
        cli("chaos", "payment", "--reset"), env=node.env, capture_output=True, text=True, timeout=30
    )
    assert reset.returncode == 0, reset.stderr
    assert wait_for(lambda: not applied(), timeout=5.0)
    ok = httpx.post(f"{node.url}/orders/{order['id']}/pay", timeout=10)
    assert ok.status_code == 200, ok.text


def test_chaos_over_http_validates_ranges(node: RunningNode):
    assert httpx.put(f"{node.url}/ops/chaos/payment", json={"error_rate": 0.5}).status_code == 401
    r = httpx.put(f"{node.url}/ops/chaos/payment", json={"error_rate": 2.0}, headers=AUTH)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "error_rate" in r.text


def test_allow_and_a_broken_body_over_real_http(node: RunningNode):
    options = httpx.options(f"{node.url}/ops/chaos/payment")
    assert options.status_code == 204
    assert {m.strip() for m in options.headers["allow"].split(",")} == {"GET", "PUT", "OPTIONS"}
    broken = httpx.put(f"{node.url}/ops/chaos/payment", content=b'{"by": "\xc3"}',
                       headers={"content-type": "application/json", **AUTH})
    assert broken.status_code == 400
    assert broken.headers["content-type"].startswith("application/problem+json")
    schema = httpx.get(f"{node.url}/openapi.json").json()
    assert "400" in schema["paths"]["/ops/chaos/payment"]["put"]["responses"]


def test_port_in_use_is_a_clear_error(node: RunningNode):
    port = node.url.rsplit(":", 1)[1]
    out = subprocess.run(
        cli("node", "--port", port), env=node.env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr


def test_sigterm_stops_the_node_cleanly(tmp_path):
    env = node_env(tmp_path)
    port = free_port()
    log_path = tmp_path / "node.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            cli("node", "--port", str(port)),
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log_path)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert "stopped" in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_health_command_reads_the_node(node: RunningNode):
    out = subprocess.run(
        cli("health", "--url", node.url, "--json"), env=node.env, capture_output=True, text=True, timeout=30
    )
    body = json.loads(out.stdout)
    assert out.returncode == (0 if body["status"] == "ok" else 1)
    assert body["stores"]["trading_db"]["status"] == "ok"
    gone = subprocess.run(
        cli("health", "--url", "http://127.0.0.1:9", "--timeout", "1"),
        env=node.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert gone.returncode == 2 and "no answer from" in gone.stderr
