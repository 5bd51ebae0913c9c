from __future__ import annotations

import io
import itertools
import json
import random

import httpx
import pytest

from tradeguard.traffic import (
    ShopperState,
    Sku,
    TrafficConfig,
    TrafficError,
    TrafficRunner,
    arrival_times,
    choose_action,
    flash_share,
    is_flash_product,
    make_order_body,
    parse_catalog,
    rate_factor,
)


def times(profile, seed, duration=200.0, rate=10.0, multiplier=10.0):
    return list(arrival_times(profile, rate, random.Random(seed), duration=duration, multiplier=multiplier))


def test_the_same_seed_gives_the_same_schedule():
    assert times("flash-sale", 7) == times("flash-sale", 7)
    assert times("flash-sale", 7) != times("flash-sale", 8)


def test_schedule_is_sorted_and_inside_the_duration():
    ts = times("diurnal", 3)
    assert ts == sorted(ts) and ts[0] > 0 and ts[-1] < 200


def test_steady_rate_matches_on_average():
    n = len(times("steady", 11, duration=200.0, rate=10.0))
    assert 2000 - 250 < n < 2000 + 250  # Poisson: sd ≈ 45


def test_an_unbounded_schedule_keeps_going():
    gen = arrival_times("steady", 100.0, random.Random(1), duration=None)
    assert len(list(itertools.islice(gen, 5000))) == 5000


def test_diurnal_has_a_quiet_night_and_a_busy_noon():
    ts = times("diurnal", 5, duration=300.0)
    night = sum(1 for t in ts if t < 30 or t >= 270)
    noon = sum(1 for t in ts if 120 <= t < 180)
    assert noon > 3 * night  # 60 s around noon (~1.6x) vs 60 s around midnight (~0.35x)
    assert rate_factor("diurnal", 0, 100, 20) == pytest.approx(0.3)
    assert rate_factor("diurnal", 50, 100, 20) == pytest.approx(1.7)


def test_flash_sale_ramps_to_the_multiplier_and_back():
    cycle, m = 100.0, 20.0
    factors = [rate_factor("flash-sale", t, cycle, m) for t in range(100)]
    assert factors[:25] == [1.0] * 25 and factors[75:] == [1.0] * 25
    assert factors[35:65] == [m] * 30
    assert all(a <= b for a, b in itertools.pairwise(factors[25:36]))
    assert all(a >= b for a, b in itertools.pairwise(factors[64:76]))
    ts = times("flash-sale", 9, duration=100.0, rate=10.0, multiplier=m)
    base = sum(1 for t in ts if t < 20)
    peak = sum(1 for t in ts if 40 <= t < 60)
    # Poisson counts over 20 s: base ≈ 200 (sd 14) at 10/s, peak ≈ 4000 (sd 63) at 20 × 10/s, so the
    # ratio is 20 ± 1.5; these bounds hold the multiplier's effect, more than 5 sd from either side
    assert 12 < peak / base < 30
    assert flash_share("flash-sale", 50, cycle, m) > 0.9
    assert flash_share("flash-sale", 5, cycle, m) < 0.1
    assert flash_share("steady", 50, cycle, m) < 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "spiky"}, "profile must be one of steady, diurnal, flash-sale"),
        ({"rate": 0}, "rate must be a number > 0"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"duration": -1}, "duration must be > 0"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"url": "localhost:8000"}, "url must start with http"),
    ],
)
def test_bad_options_name_the_option(kwargs, message):
    with pytest.raises(TrafficError, match=message):
        TrafficConfig(**{"url": "http://x", **kwargs})


CATALOG_SHOPS = [{"id": "s1", "name": "A"}, {"id": "s2", "name": "B"}]
CATALOG_PRODUCTS = {
    "s1": [{"sku": "A-1", "price_cents": 1000}, {"sku": "A-2", "price_cents": 500, "flash_price_cents": 99}],
    "s2": [{"sku": "B-1", "price_cents": 2500, "flash_sale": None}],
}


def test_catalog_parsing_finds_flash_skus():
    skus = parse_catalog(CATALOG_SHOPS, CATALOG_PRODUCTS)
    assert [(s.sku, s.shop_id, s.flash) for s in skus] == [
        ("A-1", "s1", False),
        ("A-2", "s1", True),
        ("B-1", "s2", False),
    ]
    assert is_flash_product({"sku": "x", "tx_types": ["fixed_price", "flash_sale"]})


def test_order_bodies_follow_the_api_contract():
    rng = random.Random(1)
    skus = parse_catalog(CATALOG_SHOPS, CATALOG_PRODUCTS)
    flash = make_order_body(rng, skus, True, 100, "k1")
    assert flash["tx_type"] == "flash_sale" and flash["lines"] == [{"sku": "A-2", "qty": 1}]
    for i in range(50):
        body = make_order_body(rng, skus, False, 100, f"k{i}")
        assert body["tx_type"] == "fixed_price" and body["channel"] in ("app", "web", "mini_program")
        assert {line["sku"] for line in body["lines"]} <= {"A-1", "B-1"}
        assert set(body["address"]) == {
            "country",
            "province",
            "city",
            "district",
            "street",
            "recipient",
            "phone",
        }
        assert body["idempotency_key"] == f"k{i}"


def test_actions_need_orders_to_act_on():
    rng = random.Random(2)
    empty = ShopperState()
    assert {choose_action(rng, empty) for _ in range(200)} == {"place"}
    from tradeguard.traffic import Placed

    full = ShopperState()
    full.unpaid.append(Placed("o1", []))
    full.paid.append(Placed("o2", []))
    seen = [choose_action(rng, full) for _ in range(2000)]
    assert seen.count("place") > seen.count("pay") > seen.count("cancel") > 0 and "refund" in seen


OPS_TOKEN = "merchant-secret-token"


def fake_node(token: str = OPS_TOKEN) -> httpx.MockTransport:
    orders = itertools.count(1)
    calls = itertools.count()
    pays = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/shops":
            return httpx.Response(200, json=CATALOG_SHOPS)
        if path.startswith("/shops/"):
            return httpx.Response(200, json=CATALOG_PRODUCTS[path.split("/")[2]])
        if path == "/orders":
            n = next(calls)
            if n % 10 == 9:
                return httpx.Response(429, headers={"Retry-After": "1"}, json={"title": "blocked"})
            if n % 10 == 8:
                return httpx.Response(
                    409, json={"type": "https://tradeguard/problems/out-of-stock", "title": "Out of stock"}
                )
            return httpx.Response(201, json={"id": f"o{next(orders)}", "status": "pending_payment"})
        if path.endswith("/pay"):
            if next(pays) % 5 == 4:  # a degraded gateway: the node queued the charge
                return httpx.Response(202, json={"id": "x", "status": "pending_payment"})
            return httpx.Response(200, json={"id": "x", "status": "paid"})
        if path.endswith("/cancel"):
            return httpx.Response(200, json={"status": "cancelled"})
        if path.endswith("/refunds"):
            return httpx.Response(201, json={"id": "r1", "status": "requested"})
        if path == "/refunds/r1/complete":
            if request.headers.get("authorization") != f"Bearer {token}":  # a merchant action
                return httpx.Response(401, headers={"WWW-Authenticate": "Bearer"}, json={"status": 401})
            return httpx.Response(200, json={"id": "r1", "status": "completed"})
        return httpx.Response(404)

    return httpx.MockTransport(handler)


def test_runner_sends_the_mix_and_summarises_it():
    out = io.StringIO()
    config = TrafficConfig(url="http://node", rate=150.0, duration=1.5, seed=4, concurrency=8,
                           ops_token=OPS_TOKEN)
    assert OPS_TOKEN not in repr(config)
    summary = TrafficRunner(config, out=out, transport=fake_node()).run_sync()
    assert summary["sent"] > 100
    assert summary["sent"] == (
        summary["http_2xx"]
        + summary["http_4xx"]
        + summary["blocked_429"]
        + summary["blocked_503"]
        + summary["http_5xx"]
        + summary["timeouts"]
        + summary["conn_errors"]
    )
    assert summary["orders_placed"] > 0 and summary["orders_paid"] > 0
    assert summary["payments_queued"] > 0 and summary["payments_failed"] == 0
    assert summary["refunds"] > 0 and summary["refunds_completed"] == summary["refunds"]
    assert summary["blocked_429"] > 0 and summary["http_5xx"] == 0
    assert summary["http_4xx_by_kind"].get("409:out-of-stock", 0) > 0
    assert "[traffic t=   1s" in out.getvalue()
    json.dumps(summary)


def test_fixed_skus_are_used():
    assert Sku("a", "s", 1, False).flash is False


def test_refund_completion_without_the_ops_token_is_refused_by_the_node():
    config = TrafficConfig(url="http://node", rate=150.0, duration=1.0, seed=4, concurrency=8)
    summary = TrafficRunner(config, out=io.StringIO(), transport=fake_node()).run_sync()
    assert summary["refunds"] > 0 and summary["refunds_completed"] == 0
