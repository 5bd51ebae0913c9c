"""The real pieces together, on one fake clock: a guardians Engine with a breaker on payment.charge
and the node's ``queue_payment`` degrade fallback (tradeguard.bootstrap), the trading core on SQLite.
Declines open the breaker → the next payment is queued → retried while open it stays queued → after
the recovery time the retry is the half-open probe and the order is paid."""

from __future__ import annotations

from common.clock import FakeClock
from domain.adapters.unit_of_work import build_trading_db
from domain.ports import CollectingPublisher
from domain.services import TradingService
from guardians import Engine, parse_document
from tests.unit.domain.fakes import FakeGateway
from tests.unit.domain.helpers import order_cmd, small_catalog
from tradeguard.bootstrap import fallbacks

RULES = {
    "breaker": [{"name": "pay-errors", "resource": "payment.charge", "strategy": "error_count",
                 "threshold": 3, "min_requests": 3, "stat_interval_ms": 1000, "recovery_s": 5, "probes": 1}],
    "degrade": [{"name": "pay-later", "resource": "payment.charge", "fallback": "queue_payment"}],
}


def test_breaker_open_queues_then_the_retry_job_pays_after_recovery(tmp_path):
    clock = FakeClock()
    engine = Engine(clock=clock)
    for name, fn in fallbacks().items():
        engine.register_fallback(name, fn)
    engine.apply(parse_document(RULES))
    db = build_trading_db(f"sqlite:///{tmp_path / 'guarded.db'}")
    gateway = FakeGateway()
    service = TradingService(db.uow_factory, gateway, guard=engine, clock=clock,
                             publisher=CollectingPublisher())
    service.seed(small_catalog())
    try:
        gateway.fail_next = ["declined"] * 3
        for i in range(3):
            oid = service.place_order(order_cmd([("A3", 1)], key=f"d{i}")).id
            try:
                service.pay_order(oid)
            except Exception as exc:  # a real decline: 402
                assert type(exc).__name__ == "PaymentFailed"
        queued = service.pay_order(service.place_order(order_cmd([("A1", 1)], key="q")).id)
        assert queued.status == "pending_payment"
        assert [p.status for p in queued.payments] == ["queued"]
        assert "degraded" in (queued.payments[0].reason or "")
        assert gateway.charges == []

        assert service.retry_queued_payments() == 0  # breaker still open: stays queued
        assert service.get_order(queued.id).payments[0].status == "queued"

        clock.advance(6)  # past recovery_s: half-open, the retry is the probe
        assert service.retry_queued_payments() == 1
        order = service.get_order(queued.id)
        assert order.status == "paid" and order.payments[0].id == queued.payments[0].id
        assert gateway.charges == [(queued.payments[0].id, "u1", 900)]
    finally:
        db.dispose()


def test_the_node_runs_the_retry_job_next_to_the_timeout_job():
    from types import SimpleNamespace

    from tradeguard import bootstrap

    jobs: dict[str, tuple[float, object]] = {}
    service = SimpleNamespace(cancel_expired=lambda: 0, retry_queued_payments=lambda: 0,
                              auto_receive=lambda: 0, close_auctions=lambda: 0, forfeit_presales=lambda: 0)
    settings = SimpleNamespace(timeout_sweep_s=5.0, payment_retry_s=2.0)
    ctx = SimpleNamespace(service=service, settings=settings, parts={},
                          every=lambda s, job, job_id: jobs.__setitem__(job_id, (s, job)))
    bootstrap.wire_timeouts(ctx)  # type: ignore[arg-type]
    assert jobs["payment-retry"] == (2.0, service.retry_queued_payments)
    assert jobs["timeout-cancel"][1] is service.cancel_expired
    assert {"auto-receive", "auction-close", "presale-forfeit"} <= set(jobs)
    assert fallbacks()["queue_payment"](RuntimeError("open")).queued is True
