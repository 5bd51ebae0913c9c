"""bench surge's arithmetic: phase statistics, recovery time, outcome classes, the oversold check."""

from __future__ import annotations

from pathlib import Path

from bench.loadgen import classify
from bench.surge import phase_stats, recovery_seconds, regular_skus, stock_check


def row(t: float, outcome: str = "ok", latency: float = 300.0) -> list[object]:
    return [t, 1.0, outcome, latency, 201, 200 if outcome == "ok" else 0]


def test_phase_stats_counts_every_outcome_and_reports_no_latency_without_success() -> None:
    rows = [row(0.1), row(0.2, latency=500), row(0.3, "rejected", 2), row(0.4, "timeout", 2000)]
    st = phase_stats(rows, 2.0)
    assert (st["orders"], st["ok"], st["rejected"], st["timeouts"]) == (4, 2, 1, 1)
    assert st["goodput_rps"] == 1.0 and st["offered_rps"] == 2.0
    assert st["p99_ms"] == 500 and st["p50_ms"] == 300
    empty = phase_stats([row(0.1, "timeout", 2000)], 1.0)
    assert empty["p99_ms"] is None and empty["goodput_rps"] == 0


def test_phase_stats_splits_successful_orders_at_their_place_answer() -> None:
    # records carry when the place answer came (7th field; older records have none)
    rows = [[0.1, 1.0, "ok", 400.0, 201, 200, 120.0], [0.2, 1.0, "ok", 300.0, 201, 200, 20.0],
            [0.3, 1.0, "timeout", 2000.0, 201, 0, 1500.0], row(0.4)]
    st = phase_stats(rows, 1.0)
    assert st["place_p50_ms"] == 20.0 and st["place_p99_ms"] == 120.0  # the timed-out order is not in it
    assert phase_stats([row(0.1)], 1.0)["place_p99_ms"] is None


def test_recovery_is_the_last_bad_order_before_a_sustained_normal_stretch() -> None:
    rows = [row(0.1, "rejected", 2), row(0.5, latency=2000), row(1.2), row(2.1), row(3.1), row(4.1)]
    assert recovery_seconds(rows, 5, p99_limit_ms=700) == (0.5, True)
    assert recovery_seconds([row(0.2), row(1.5), row(2.5)], 3, p99_limit_ms=700) == (0.0, True)
    never = [row(t + 0.5, "timeout", 2000) for t in range(5)]
    assert recovery_seconds(never, 5, p99_limit_ms=700) == (5.0, False)


def test_fast_refusals_are_told_from_other_failures() -> None:
    assert classify(201, False) == "ok"
    assert classify(429, True) == "rejected" and classify(503, True) == "rejected"
    assert classify(503, False) == "error" and classify(500, False) == "error"
    assert classify(409, False) == "refused" and classify(402, False) == "refused"


def test_stock_check_counts_sold_and_reserved_units(tmp_path: Path) -> None:
    from domain.adapters.payment_sim import SimulatedGateway
    from domain.adapters.unit_of_work import build_trading_db
    from domain.catalog import demo_catalog
    from domain.commands import LineItem, PlaceOrder
    from domain.services import TradingService

    url = f"sqlite:///{tmp_path / 'trading.db'}"
    db = build_trading_db(url)
    service = TradingService(db.uow_factory, SimulatedGateway(latency_ms=0, sleeper=lambda s: None))
    service.seed(demo_catalog())
    skus, initial = regular_skus()
    address = {
        "country": "CN",
        "province": "Zhejiang",
        "city": "Hangzhou",
        "district": "Xihu",
        "street": "1 Market Street",
        "recipient": "b",
        "phone": "13800000000",
    }
    placed = [
        service.place_order(
            PlaceOrder(
                buyer_id=f"b{i}",
                tx_type="fixed_price",
                channel="app",
                lines=[LineItem(skus[0], 2)],
                address=address,
                idempotency_key=f"k{i}",
            )
        )
        for i in range(3)
    ]
    service.pay_order(placed[0].id)
    db.engine.dispose()
    check = stock_check(url, initial)
    assert check == {"oversold": 0, "sold_units": 2, "pending_units": 4, "consistent": True, "mismatches": []}
    tight = {**initial, (skus[0], "default"): 5}  # 2 sold + 4 held > 5 in stock
    assert stock_check(url, tight)["oversold"] == 1
