"""The composition root wired for real on SQLite files in tmp_path, driven in-process (no server)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest

from guardians.starlette_routes import starlette_route_resolver
from tradeguard import bootstrap
from tradeguard.bootstrap import build_node, seed_catalog
from tradeguard.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADDRESS = {
    "country": "CN",
    "province": "Zhejiang",
    "city": "Hangzhou",
    "district": "Xihu",
    "street": "1 Lake Road",
    "recipient": "Li",
    "phone": "13800000000",
}


OPS_TOKEN = "test-ops-token"
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}  # the node's control routes need TRADEGUARD_OPS_TOKEN


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def settings(tmp_path, monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    s = load_settings(var_dir=tmp_path / "var", payment_timeout_s=60, ops_token=OPS_TOKEN)
    seed_catalog(s)
    return s


def order_body(sku: str = "ELEC-001", key: str = "k1", buyer: str = "b1") -> dict:
    return {
        "buyer_id": buyer,
        "tx_type": "fixed_price",
        "channel": "app",
        "lines": [{"sku": sku, "qty": 1}],
        "address": ADDRESS,
        "idempotency_key": key,
    }


@pytest.fixture
def node_factory(settings):
    nodes = []

    def make(**kwargs):
        node = build_node(settings, port=18000 + len(nodes), **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def test_health_lists_each_store_and_part(node_factory):
    node = node_factory(guardians=False, collectors=False)
    client = TestClient(node.app)
    health = client.get("/ops/health").json()
    assert health["status"] == "ok"
    assert health["stores"]["trading_db"]["status"] == "ok"
    assert health["stores"]["control_db"]["status"] == "ok"
    assert health["node"]["parts"]["guardians"] == "off"
    assert client.post("/orders", json=order_body()).status_code == 201


def test_a_failing_check_degrades_health_but_never_raises(node_factory):
    node = node_factory(guardians=False, collectors=False)

    def broken():
        raise RuntimeError("metric store on fire")

    node.ctx.health_checks["metrics"] = broken
    health = TestClient(node.app).get("/ops/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded"
    assert "metric store on fire" in body["stores"]["metrics"]["error"]


def apply_rules(node, document: dict) -> None:
    import guardians

    node.ctx.engine.apply(guardians.parse_document(document), version=99)


def test_a_block_deep_in_the_core_is_a_429_problem_not_a_500(node_factory):
    node = node_factory(collectors=False)
    apply_rules(node, {"flow": [{"resource": "order.place", "grade": "qps", "threshold": 1}]})
    client = TestClient(node.app)
    answers = [client.post("/orders", json=order_body(key=f"k{i}")) for i in range(3)]
    assert answers[0].status_code == 201
    blocked = answers[-1]
    assert blocked.status_code == 429
    assert blocked.headers["content-type"].startswith("application/problem+json")
    assert int(blocked.headers["retry-after"]) >= 1
    assert blocked.json()["resource"] == "order.place"


def test_an_open_payment_breaker_without_degrade_is_a_503_and_the_order_stays_payable(node_factory):
    node = node_factory(collectors=False)
    breaker = {"resource": "payment.charge", "strategy": "error_count", "threshold": 1, "min_requests": 1,
               "stat_interval_ms": 1000, "recovery_s": 60}
    apply_rules(node, {"breaker": [breaker]})
    node.gateway.configure(outage=True)
    client = TestClient(node.app)
    first = client.post("/orders", json=order_body(key="b1")).json()["id"]
    second = client.post("/orders", json=order_body(key="b2")).json()["id"]
    assert client.post(f"/orders/{first}/pay").status_code == 402  # the gateway's failure opens the breaker
    blocked = client.post(f"/orders/{second}/pay")
    assert blocked.status_code == 503
    assert blocked.headers["content-type"].startswith("application/problem+json")
    assert blocked.json()["resource"] == "payment.charge"
    assert client.get(f"/orders/{second}").json()["status"] == "pending_payment"


def test_routes_are_guarded_by_template_but_ops_never(node_factory):
    node = node_factory(collectors=False)
    apply_rules(
        node,
        {
            "flow": [
                {"resource": "GET /shops/{shop_id}/products", "grade": "qps", "threshold": 1},
                {"resource": "GET /ops/health", "grade": "qps", "threshold": 1},
            ]
        },
    )
    client = TestClient(node.app, headers=AUTH)
    codes = [client.get("/shops/acme-electronics/products").status_code for _ in range(3)]
    assert codes[0] == 200 and codes[-1] == 429
    assert {client.get("/ops/health").status_code for _ in range(3)} == {200}
    stats = client.get("/ops/stats").json()
    assert stats["resources"]["GET /shops/{shop_id}/products"]["block_flow_qps"] >= 1
    assert client.get("/ops/rules").json()["version"] == 99


def test_route_resolver_gives_path_templates(node_factory):
    node = node_factory(guardians=False, collectors=False)
    resolve = starlette_route_resolver(node.app)
    assert (
        resolve({"type": "http", "method": "POST", "path": "/orders/o_1/pay"})
        == "POST /orders/{order_id}/pay"
    )
    assert resolve({"type": "http", "method": "GET", "path": "/nothing/here"}) is None


def test_chaos_over_http_validates_and_applies_at_once(node_factory):
    node = node_factory(guardians=False, collectors=False)
    client = TestClient(node.app, headers=AUTH)
    bad = client.put("/ops/chaos/payment", json={"latency_ms": -5})
    assert bad.status_code == 422 and bad.json()["field"] == "latency_ms"
    ok = client.put("/ops/chaos/payment", json={"error_rate": 1.0, "by": "test"})
    assert ok.status_code == 200 and ok.json()["error_rate"] == 1.0
    assert node.gateway.settings()["error_rate"] == 1.0
    order = client.post("/orders", json=order_body()).json()
    assert client.post(f"/orders/{order['id']}/pay").status_code == 402
    client.put("/ops/chaos/payment", json={"reset": True})
    assert node.gateway.settings()["error_rate"] == 0.0
    assert client.post(f"/orders/{order['id']}/pay").json()["status"] == "paid"


def test_the_timeout_job_cancels_expired_orders(node_factory):
    clock = FakeClock()
    node = node_factory(guardians=False, collectors=False, clock=clock)
    client = TestClient(node.app)
    order = client.post("/orders", json=order_body()).json()
    job = node.ctx.scheduler.get_job("timeout-cancel")
    job.func()
    assert client.get(f"/orders/{order['id']}").json()["status"] == "pending_payment"
    clock.at += timedelta(seconds=61)
    job.func()
    assert client.get(f"/orders/{order['id']}").json()["status"] == "cancelled"


def test_demo_rules_apply_once(settings):
    first = bootstrap.apply_demo_rules(settings)
    assert first >= 1
    assert bootstrap.apply_demo_rules(settings) == first  # the same document: no new version


def test_start_and_stop_run_the_background_parts(node_factory):
    node = node_factory(collectors=False)
    node.start()
    assert node.ctx.scheduler.running
    assert {j.id for j in node.ctx.scheduler.get_jobs()} >= {"chaos-poll", "heartbeat", "timeout-cancel"}
    node.stop()
    assert not node.ctx.scheduler.running


def test_seeding_twice_creates_nothing_new(settings):
    again = seed_catalog(settings)  # the fixture seeded once already
    assert again == {"shops": 0, "products": 0, "stock": 0, "promotions": 0}


def test_an_unreachable_control_db_degrades_the_node_but_it_serves(tmp_path, monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    s = load_settings(var_dir=tmp_path / "var", control_db="postgresql+psycopg://nobody@127.0.0.1:9/control",
                      ops_token=OPS_TOKEN)
    seed_catalog(s)
    node = build_node(s, port=18100, collectors=False)
    try:
        client = TestClient(node.app, headers=AUTH)
        health = client.get("/ops/health").json()
        assert health["status"] == "degraded"
        assert health["stores"]["control_db"]["status"] == "error"
        assert health["stores"]["rule_watcher"]["status"] == "error"
        assert client.put("/ops/chaos/payment", json={"error_rate": 0.5}).status_code == 503
        assert client.post("/orders", json=order_body()).status_code == 201
    finally:
        node.stop()


def test_a_store_password_never_reaches_health_or_the_log(tmp_path, monkeypatch, caplog):
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    canary = "canary-pw-7f3a"
    s = load_settings(var_dir=tmp_path / "var",
                      control_db=f"postgresql+psycopg://nobody:{canary}@127.0.0.1:9/control")
    seed_catalog(s)
    node = build_node(s, port=18101, collectors=False)
    try:
        body = TestClient(node.app).get("/ops/health").text
        assert "127.0.0.1:9" in body  # the control DB is named...
        assert canary not in body  # ...without its password
        assert all(canary not in r.getMessage() for r in caplog.records)
    finally:
        node.stop()


# ---------------------------------------------------------------- the worker
def test_the_worker_is_wired_with_its_four_jobs_and_reports_its_health(settings):
    clock = FakeClock()
    worker = bootstrap.build_worker(settings, clock=clock, interval_s=10, breaker_poll_s=1, deliver_s=3)
    try:
        jobs = worker.jobs()
        intervals = {k: v[1] for k, v in jobs.items()}
        assert intervals == {
            "lease": 2.0, "evaluate": 10, "breakers": 1, "deliver": 3, "relay": 1.0, "canary": 5.0
        }
        code, report = bootstrap.worker_health(settings, 10, clock=clock)
        assert code == 1 and report["last_cycle_age_s"] is None  # never evaluated yet
        out = worker.once()
        assert out["evaluate"]["rules"] >= 1  # the default alert rules were installed
        assert set(out["deliver"]) >= {"sent"}
        clock.at += timedelta(seconds=29)
        assert bootstrap.worker_health(settings, 10, clock=clock)[0] == 0
        clock.at += timedelta(seconds=2)  # 31 s > 3 intervals
        assert bootstrap.worker_health(settings, 10, clock=clock)[0] == 1
    finally:
        worker.close()


def test_worker_start_schedules_the_jobs_and_close_stops_them(settings):
    worker = bootstrap.build_worker(settings, interval_s=60, breaker_poll_s=60, deliver_s=60)
    worker.start()
    try:
        jobs = {j.id for j in worker._scheduler.get_jobs()}
        assert jobs == {"lease", "evaluate", "breakers", "deliver", "relay", "canary"}
    finally:
        worker.close()
    assert worker._scheduler is None


def test_worker_command_once_prints_the_cycle(settings, monkeypatch, capsys):
    import json

    from tradeguard import cli

    monkeypatch.setenv("TRADEGUARD_VAR_DIR", str(settings.var_dir))
    assert cli.main(["worker", "--once"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "evaluate" in out and "deliver" in out
    assert cli.main(["worker", "--health"]) == 0
