"""Queued payments on real SQL stores (SQLite file and PostgreSQL): two nodes retrying the queue at
the same time charge every queued payment exactly once; the claim is a conditional UPDATE."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import update

from domain import errors
from domain.adapters import orm
from domain.ports import PAYMENT_CHARGE, ChargeResult, CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeGateway
from tests.unit.domain.helpers import order_cmd
from tests.unit.domain.test_queued_payments import SwitchGuard, queue_payment

N_ORDERS = 12


class SlowGateway(FakeGateway):
    """Takes a little while per charge, so two retry runs overlap; thread-safe charge log."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def charge(self, payment_id: str, buyer_id: str, amount_cents: int) -> ChargeResult:
        time.sleep(0.005)
        with self.lock:
            return super().charge(payment_id, buyer_id, amount_cents)


def test_two_concurrent_retry_runs_charge_each_queued_payment_once(env):
    guard = SwitchGuard(blocked={PAYMENT_CHARGE}, fallbacks={PAYMENT_CHARGE: queue_payment})
    env.service.guard = guard
    ids = []
    for i in range(N_ORDERS):
        view = env.service.place_order(order_cmd([("A3", 1)], buyer=f"b{i}", key=f"k{i}"))
        assert env.service.pay_order(view.id).payments[0].status == "queued"
        ids.append(view.id)
    assert env.stock("A3") == (100, N_ORDERS)

    gateway = SlowGateway()
    guard.blocked.clear()  # the breaker closed again
    nodes = [TradingService(env.db.uow_factory, gateway, guard=guard, clock=env.clock,
                            publisher=CollectingPublisher()) for _ in range(2)]
    start = threading.Barrier(2)
    settled: list[int] = []
    failures: list[BaseException] = []

    def run(node: TradingService) -> None:
        try:
            start.wait(timeout=10)
            settled.append(node.retry_queued_payments())
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(node,)) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    assert sum(settled) == N_ORDERS
    charged = [c[0] for c in gateway.charges]
    assert len(charged) == N_ORDERS and len(set(charged)) == N_ORDERS  # each payment once
    for oid in ids:
        order = env.service.get_order(oid)
        assert order.status == "paid" and [p.status for p in order.payments] == ["succeeded"]
    assert env.stock("A3") == (100 - N_ORDERS, 0)
    assert sum(n.retry_queued_payments() for n in nodes) == 0  # nothing left
    assert len(gateway.charges) == N_ORDERS


def test_claim_is_a_conditional_update_of_the_payment_row(env):
    env.service.guard = SwitchGuard(blocked={PAYMENT_CHARGE}, fallbacks={PAYMENT_CHARGE: queue_payment})
    view = env.service.place_order(order_cmd([("A1", 1)]))
    payment_id = env.service.pay_order(view.id).payments[0].id
    with env.db.uow_factory() as uow:
        order = uow.orders.get(view.id)
        assert order.claim_queued_payment(payment_id, env.clock.now(), env.service.queued_payment_grace)
        # another node claimed the same payment in between (its row is no longer 'queued')
        uow.orders.conn.execute(update(orm.payments).where(orm.payments.c.id == payment_id)
                                .values(status="pending"))
        with pytest.raises(errors.ConcurrentUpdate):
            uow.orders.save(order)


def test_queued_payment_survives_the_deadline_within_the_grace_in_sql(env):
    env.service.guard = SwitchGuard(blocked={PAYMENT_CHARGE}, fallbacks={PAYMENT_CHARGE: queue_payment})
    queued = env.service.place_order(order_cmd([("A1", 1)], key="q"))
    env.service.pay_order(queued.id)
    plain = env.service.place_order(order_cmd([("A1", 1)], key="p"))
    env.clock.advance(minutes=16)
    assert env.service.cancel_expired() == 1
    assert env.service.get_order(plain.id).status == "cancelled"
    assert env.service.get_order(queued.id).status == "pending_payment"
    env.clock.advance(minutes=5)
    assert env.service.cancel_expired() == 1
    order = env.service.get_order(queued.id)
    assert order.status == "cancelled" and order.payments[0].status == "failed"
    assert env.stock("A1") == (10, 0)

