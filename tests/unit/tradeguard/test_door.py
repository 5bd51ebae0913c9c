"""Guardians at the door, through HTTP against a real node app (SQLite files in tmp_path):
origins (API keys, a trusted proxy's header), limit_app, chain entrances, authority (403),
route params (client_ip, body, every SKU) and the stale order.get fallback."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import guardians
from tradeguard.bootstrap import build_node, seed_catalog
from tradeguard.origins import ApiKeyStore
from tradeguard.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADDRESS = {"country": "CN", "province": "Zhejiang", "city": "Hangzhou", "district": "Xihu",
           "street": "1 Lake Road", "recipient": "Li", "phone": "13800000000"}
PROXY = ("127.0.0.1", 40000)  # in TRADEGUARD_TRUSTED_PROXIES
STRANGER = ("10.9.9.9", 40000)  # not a trusted proxy


def order(key: str, buyer: str = "b1", skus: tuple[str, ...] = ("ELEC-003",)) -> dict[str, Any]:
    return {"buyer_id": buyer, "tx_type": "fixed_price", "channel": "app",
            "lines": [{"sku": s, "qty": 1} for s in skus], "address": ADDRESS, "idempotency_key": key}


@pytest.fixture
def settings(tmp_path, monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    s = load_settings(var_dir=tmp_path / "var", payment_timeout_s=60, trusted_proxies="127.0.0.1, ::1/128")
    seed_catalog(s)
    return s


@pytest.fixture
def node(settings):
    n = build_node(settings, port=18500, collectors=False)
    yield n
    n.stop()


def rules(node, doc: dict[str, Any]) -> None:
    node.ctx.engine.apply(guardians.parse_document(doc), version=7)


def client(node, peer: tuple[str, int] = PROXY, **headers: str) -> TestClient:
    return TestClient(node.app, client=peer, headers=headers)


_seq = iter(range(10**6))


def post(c: TestClient, **kw: Any) -> Any:
    return c.post("/orders", json=order(f"k{next(_seq)}", **kw))


def test_per_ip_limit_counts_the_forwarded_client_only_behind_a_trusted_proxy(node):
    rules(node, {"param": [{"name": "per-ip", "resource": "POST /orders", "param": "client_ip",
                            "threshold": 2, "duration_s": 60}]})
    a = client(node, **{"X-Forwarded-For": "203.0.113.7, 127.0.0.1"})
    assert [post(a).status_code for _ in range(3)] == [201, 201, 429]
    refused = post(a).json()
    assert refused["rule"] == "per-ip" and "203.0.113.7" in refused["detail"]
    b = client(node, **{"X-Forwarded-For": "203.0.113.8"})
    assert post(b).status_code == 201
    # a stranger's X-Forwarded-For is not believed: it is counted by its own address
    s = client(node, STRANGER, **{"X-Forwarded-For": "203.0.113.99"})
    assert [post(s).status_code for _ in range(3)] == [201, 201, 429]
    assert "10.9.9.9" in post(s).json()["detail"]


def test_per_buyer_limit_reads_the_body_and_the_route_still_gets_it(node):
    rules(node, {"param": [{"name": "per-buyer", "resource": "POST /orders", "param": "body:buyer_id",
                            "threshold": 2, "duration_s": 60}]})
    c = client(node)
    first = post(c, buyer="alice")
    assert first.status_code == 201 and first.json()["buyer_id"] == "alice"
    assert post(c, buyer="alice").status_code == 201
    blocked = post(c, buyer="alice")
    assert blocked.status_code == 429 and "alice" in blocked.json()["detail"]
    assert post(c, buyer="bob").json()["buyer_id"] == "bob"


def test_every_sku_of_a_multi_line_order_is_counted(node):
    rules(node, {"param": [{"resource": "order.place", "param": "sku", "threshold": 1, "duration_s": 60}]})
    c = client(node)
    assert post(c, skus=("ELEC-003", "ELEC-004")).status_code == 201
    second_line = post(c, skus=("ELEC-004",))  # only the second line of the first order
    assert second_line.status_code == 429
    assert "ELEC-004" in second_line.json()["detail"]
    assert post(c, skus=("ELEC-001",)).status_code == 201


def test_limit_app_limits_one_origin_only_and_origins_come_from_keys_or_a_trusted_proxy(node, settings):
    rules(node, {"flow": [{"name": "batch-jobs", "resource": "order.place", "grade": "qps", "threshold": 1,
                           "limit_app": "batch"}]})
    batch = client(node, **{"X-Caller": "batch"})
    assert [post(batch).status_code for _ in range(3)].count(429) >= 1
    web = client(node, **{"X-Caller": "web"})
    assert [post(web).status_code for _ in range(3)] == [201, 201, 201]
    # a stranger cannot pick its origin by header (it is "default", not limited as batch)
    pretender = client(node, STRANGER, **{"X-Caller": "batch"})
    assert [post(pretender).status_code for _ in range(3)] == [201, 201, 201]
    # an API key gives its owner's origin, from anywhere
    store = ApiKeyStore(settings.control_db)
    key = store.add("nightly", "batch")
    store.close()
    keyed = client(node, STRANGER, **{"X-Api-Key": key})
    assert [post(keyed).status_code for _ in range(3)].count(429) >= 1


def test_a_deny_listed_origin_is_refused_with_403_naming_the_rule(node):
    rules(node, {"authority": [
        {"name": "no-bots", "resource": "POST /orders", "strategy": "deny", "origins": ["bot", "scraper"]},
        {"name": "partners-only", "resource": "GET /orders/{order_id}", "strategy": "allow",
         "origins": ["web"]},
    ]})
    bot = post(client(node, **{"X-Caller": "bot"}))
    assert bot.status_code == 403
    assert bot.headers["content-type"].startswith("application/problem+json")
    assert bot.json()["rule"] == "no-bots" and bot.json()["rule_type"] == "authority"
    placed = post(client(node, **{"X-Caller": "web"}))
    assert placed.status_code == 201
    oid = placed.json()["id"]
    assert client(node, **{"X-Caller": "web"}).get(f"/orders/{oid}").status_code == 200
    # the allow-list is not lifted by a header a stranger sets
    denied = client(node, STRANGER, **{"X-Caller": "web"}).get(f"/orders/{oid}")
    assert denied.status_code == 403 and denied.json()["rule"] == "partners-only"


def test_a_chain_rule_limits_order_place_only_when_entered_from_post_orders(node):
    rules(node, {"flow": [{"name": "from-web", "resource": "order.place", "grade": "qps", "threshold": 1,
                           "strategy": "chain", "ref_resource": "POST /orders"}]})
    c = client(node)
    answers = [post(c).status_code for _ in range(3)]
    assert answers[0] == 201 and 429 in answers
    eng = node.ctx.engine
    assert [eng.guard("order.place", lambda: "ok") for _ in range(5)] == ["ok"] * 5  # another entrance


def test_a_blocked_order_read_answers_the_cached_view_marked_stale(node):
    c = client(node)
    oid = post(c).json()["id"]
    other = post(c).json()["id"]
    fresh = c.get(f"/orders/{oid}")
    assert fresh.status_code == 200 and "x-tradeguard-stale" not in fresh.headers
    rules(node, {"flow": [{"resource": "order.get", "threshold": 1, "grade": "concurrency"}],
                 "param": [{"resource": "order.get", "param": "order", "threshold": 0}]})
    stale = c.get(f"/orders/{oid}")
    assert stale.status_code == 200 and stale.headers["x-tradeguard-stale"] == "true"
    assert stale.json() == fresh.json()
    never_read = c.get(f"/orders/{other}")
    assert never_read.status_code == 429  # nothing cached: the block goes through


def test_the_block_log_names_the_refused_ip_and_sku_as_blocks_points(node):
    from collectors.sources import GuardianSource

    rules(node, {"param": [
        {"name": "per-ip", "resource": "POST /orders", "param": "client_ip", "threshold": 1,
         "duration_s": 60},
        {"name": "hot-sku", "resource": "order.place", "param": "sku", "threshold": 1, "duration_s": 60},
    ]})
    a = client(node, **{"X-Forwarded-For": "198.51.100.4", "X-Caller": "web"})
    b = client(node, **{"X-Forwarded-For": "198.51.100.5"})
    assert post(a, skus=("ELEC-005",)).status_code == 201
    assert post(a, skus=("ELEC-001",)).status_code == 429  # per-ip
    assert post(b, skus=("ELEC-005",)).status_code == 429  # hot-sku
    eng = node.ctx.engine
    source = GuardianSource(eng, app="t", instance="n1")
    import time as _time

    deadline = _time.monotonic() + 3
    points = []
    while _time.monotonic() < deadline and len(points) < 2:
        _time.sleep(0.2)
        points += [p for p in source.collect() if p.measurement == "blocks"]
    by_rule = {p.tags["rule"]: p for p in points}
    assert by_rule["per-ip"].tags["param"] == "client_ip"
    assert by_rule["per-ip"].tags["value"] == "198.51.100.4"
    assert by_rule["per-ip"].tags["origin"] == "web"
    assert by_rule["per-ip"].tags["resource"] == "POST /orders"
    assert by_rule["hot-sku"].tags["value"] == "ELEC-005"
    assert by_rule["hot-sku"].tags["resource"] == "order.place"
    assert sum(p.fields["count"] for p in points) == 2


def test_sku_in_flight_holds_four_per_sku_and_gives_them_back_after_errors(node):
    """The contract example ``sku-in-flight``: 4 orders of one SKU in flight, the 5th refused (429)."""
    import threading

    rules(node, {"param": [{"name": "sku-in-flight", "resource": "order.place", "param": "sku",
                            "grade": "concurrency", "threshold": 4}]})
    svc = node.ctx.service
    place = svc._place
    inside, release = threading.Semaphore(0), threading.Event()

    def slow_place(cmd, *a, **kw):
        if any(li.sku == "ELEC-003" for li in cmd.lines):
            inside.release()
            release.wait(20)
        return place(cmd, *a, **kw)

    svc._place = slow_place
    c = client(node)
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(post(c).status_code)) for _ in range(4)]
    for th in threads:
        th.start()
    try:
        for _ in range(4):
            assert inside.acquire(timeout=20)
        fifth = post(c)
        assert fifth.status_code == 429
        assert fifth.json()["rule"] == "sku-in-flight" and "ELEC-003" in fifth.json()["detail"]
        assert post(c, skus=("ELEC-001",)).status_code == 201  # another SKU is not held back
    finally:
        release.set()
        for th in threads:
            th.join(30)
    assert answers == [201] * 4
    holder = node.ctx.engine._slots["order.place"].holds[0]
    assert holder.counts == {}

    def failing_place(cmd, *a, **kw):
        raise RuntimeError("store exploded")

    svc._place = failing_place
    broken = TestClient(node.app, client=PROXY, raise_server_exceptions=False)
    assert [post(broken).status_code for _ in range(6)] == [500] * 6
    assert holder.counts == {}  # every failed call gave its SKU back
    svc._place = place
    assert [post(c).status_code for _ in range(5)] == [201] * 5


def test_path_query_and_cookie_params_limit_each_value_on_their_route(node):
    c = client(node)
    shops = [s["id"] for s in c.get("/shops").json()][:2]
    assert len(shops) == 2
    rules(node, {"param": [
        {"name": "per-shop", "resource": "GET /shops/{shop_id}/products", "param": "path:shop_id",
         "threshold": 1, "duration_s": 60},
        {"name": "per-campaign", "resource": "GET /shops", "param": "query:campaign", "threshold": 1,
         "duration_s": 60},
        {"name": "per-session", "resource": "POST /orders", "param": "cookie:sid", "threshold": 1,
         "duration_s": 60},
    ]})
    assert c.get(f"/shops/{shops[0]}/products").status_code == 200
    blocked = c.get(f"/shops/{shops[0]}/products")
    assert blocked.status_code == 429 and shops[0] in blocked.json()["detail"]
    assert c.get(f"/shops/{shops[1]}/products").status_code == 200
    assert c.get("/shops?campaign=d11").status_code == 200
    assert c.get("/shops?campaign=d11").json()["rule"] == "per-campaign"
    assert c.get("/shops?campaign=d12").status_code == 200
    assert c.get("/shops").status_code == 200  # no value: not limited
    s1 = TestClient(node.app, client=PROXY, cookies={"sid": "s-1"})
    assert [post(s1).status_code for _ in range(2)] == [201, 429]
    assert post(TestClient(node.app, client=PROXY, cookies={"sid": "s-2"})).status_code == 201


@pytest.mark.parametrize("strategy, pattern", [("exact", "bot-7"), ("prefix", "bot-"), ("regex", r"bot-\d+")])
def test_only_header_values_matching_the_pattern_are_limited(node, strategy, pattern):
    rules(node, {"param": [{"name": "bot-devices", "resource": "POST /orders", "param": "header:X-Device-Id",
                            "threshold": 1, "duration_s": 60, "match_strategy": strategy,
                            "pattern": pattern}]})
    bot = client(node, **{"X-Device-Id": "bot-7"})
    assert [post(bot).status_code for _ in range(2)] == [201, 429]
    phone = client(node, **{"X-Device-Id": "phone-7"})
    assert [post(phone).status_code for _ in range(3)] == [201, 201, 201]


def test_only_query_values_matching_a_prefix_are_limited(node):
    rules(node, {"param": [{"name": "scraper-pages", "resource": "GET /shops", "param": "query:ref",
                            "threshold": 1, "duration_s": 60, "match_strategy": "prefix",
                            "pattern": "crawler"}]})
    c = client(node)
    assert [c.get("/shops?ref=crawler-9").status_code for _ in range(2)] == [200, 429]
    assert [c.get("/shops?ref=newsletter").status_code for _ in range(3)] == [200, 200, 200]


def test_a_guarded_off_product_read_answers_sold_out_instead_of_429(node):
    c = client(node)
    shop = c.get("/shops").json()[0]["id"]
    fresh = c.get(f"/shops/{shop}/products").json()
    assert fresh and any(p["available"] > 0 for p in fresh)
    resource = "GET /shops/{shop_id}/products"
    rules(node, {"flow": [{"name": "inventory-off", "resource": resource, "threshold": 1}],
                 "degrade": [{"name": "sold-out", "resource": resource, "fallback": "sold_out"}]})
    answers = [c.get(f"/shops/{shop}/products") for _ in range(3)]
    assert all(a.status_code == 200 for a in answers)  # never a 429 (the reads before were counted too)
    degraded = answers[-1]
    assert degraded.status_code == 200 and degraded.headers["x-tradeguard-degraded"] == "sold_out"
    body = degraded.json()
    assert [p["sku"] for p in body] == [p["sku"] for p in fresh]
    assert all(p["available"] == 0 and p["sold_out"] is True and p["warehouses"] is None for p in body)
    assert all(p["flash"] is None or p["flash"]["available"] == 0 for p in body)
    assert [p["price_cents"] for p in body] == [p["price_cents"] for p in fresh]
    # an unknown shop: the fallback declines and the block goes through
    unknown = c.get("/shops/no-such-shop/products")
    assert unknown.status_code == 429 and unknown.json()["rule"] == "inventory-off"
    # without the degrade rule the block is a 429 problem
    rules(node, {"flow": [{"name": "inventory-off", "resource": resource, "threshold": 1}]})
    assert [c.get(f"/shops/{shop}/products").status_code for _ in range(3)][-1] == 429
