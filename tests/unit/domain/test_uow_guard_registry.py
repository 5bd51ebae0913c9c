from __future__ import annotations

import pytest

from domain import errors
from domain.capabilities import default_registry
from domain.ports import ChargeResult
from domain.services import TradingService
from tests.unit.domain.fakes import FakeUnitOfWork
from tests.unit.domain.helpers import Env, order_cmd, small_catalog


class CommitFails(FakeUnitOfWork):
    def _commit(self):
        raise RuntimeError("disk full")


def test_no_events_and_nothing_written_when_commit_fails(env):
    env.service.uow_factory = lambda readonly=False: CommitFails(env.store, readonly=readonly)
    with pytest.raises(RuntimeError):
        env.service.place_order(order_cmd([("A1", 1)]))
    assert env.publisher.events == [] and env.store.state.orders == {} and env.stock("A1") == (10, 0)


def test_events_published_only_after_commit(env):
    seen_at_publish = []

    class Spy:
        def publish(self, events):
            seen_at_publish.append((len(env.store.state.orders), [e.name for e in events]))

    env.service.publisher = Spy()
    env.service.place_order(order_cmd([("A1", 1)]))
    assert seen_at_publish == [(1, ["OrderPlaced", "StockReserved"])]


def test_uow_rolls_back_unless_committed(env):
    with env.store.uow() as uow:
        assert uow.inventory.try_reserve("A1", "default", 4)
    assert env.stock("A1") == (10, 0)
    with env.store.uow() as uow:
        assert uow.inventory.try_reserve("A1", "default", 4)
        assert not uow.inventory.try_reserve("A1", "default", 7)
        uow.commit()
    assert env.stock("A1") == (10, 4)


def test_publisher_failure_never_fails_the_order(env):
    class Broken:
        def publish(self, events):
            raise RuntimeError("metrics down")

    env.service.publisher = Broken()
    assert env.service.place_order(order_cmd([("A1", 1)])).status == "pending_payment"


def test_transient_store_errors_are_retried_then_reported(env):
    calls = {"n": 0}

    class Flaky(FakeUnitOfWork):
        def _commit(self):
            calls["n"] += 1
            if calls["n"] < 3:
                raise errors.TransientStoreError("database is locked")
            super()._commit()

    env.service.uow_factory = lambda readonly=False: Flaky(env.store, readonly=readonly)
    env.service.place_order(order_cmd([("A1", 1)]))
    assert calls["n"] == 3 and env.stock("A1") == (10, 1)

    class Always(FakeUnitOfWork):
        def _commit(self):
            raise errors.TransientStoreError("database is locked")

    env.service.uow_factory = lambda readonly=False: Always(env.store, readonly=readonly)
    with pytest.raises(errors.StoreUnavailable):
        env.service.place_order(order_cmd([("A1", 1)], key="k2"))


class RecordingGuard:
    def __init__(self, block: set[str] = frozenset()):
        self.calls: list[tuple[str, dict]] = []
        self.block = block

    def guard(self, resource, call, *, args=None, fallback=None):
        self.calls.append((resource, dict(args or {})))
        if resource in self.block:
            exc = RuntimeError(f"blocked {resource}")
            if fallback is not None:
                return fallback(exc)
            raise exc
        return call()


def test_guard_sees_every_capability_call_with_key_args():
    env = Env()
    guard = RecordingGuard()
    env.service.guard = guard
    view = env.service.place_order(order_cmd([("A1", 1), ("B1", 1)]))
    env.service.pay_order(view.id)
    env.service.get_order(view.id)
    env.service.request_refund(view.id, [("B1", 1)])
    resources = [r for r, _ in guard.calls]
    assert resources == ["order.place", "inventory.reserve", "inventory.reserve", "order.pay",
                         "payment.charge", "order.get", "refund.request"]
    reserve_args = [a for r, a in guard.calls if r == "inventory.reserve"]
    assert reserve_args == [{"shop": "s1", "sku": "A1", "buyer": "u1"},
                            {"shop": "s2", "sku": "B1", "buyer": "u1"}]
    assert guard.calls[0][1]["buyer"] == "u1"


def test_blocked_payment_uses_fallback_and_order_stays_payable():
    env = Env()
    env.service.guard = RecordingGuard(block={"payment.charge"})
    view = env.service.place_order(order_cmd([("A1", 1)]))
    with pytest.raises(errors.PaymentFailed) as exc:
        env.service.pay_order(view.id)
    assert "degraded" in exc.value.extra["reason"]
    assert env.gateway.charges == [] and env.service.get_order(view.id).status == "pending_payment"


def test_blocked_reservation_rolls_back_the_order():
    env = Env()
    env.service.guard = RecordingGuard(block={"inventory.reserve"})
    with pytest.raises(RuntimeError):
        env.service.place_order(order_cmd([("A1", 1)]))
    assert env.store.state.orders == {} and env.stock("A1") == (10, 0)


def test_a_new_tx_type_overrides_one_capability_only():
    class CashOnDelivery:
        def charge(self, gateway, order, payment_id):
            return ChargeResult(ok=True, reference=f"cod_{payment_id}")

    registry = default_registry()
    cod = registry.register("cod", base="fixed_price", payment=CashOnDelivery())
    assert cod.pricing is registry.get("fixed_price").pricing
    assert registry.get("fixed_price").payment is not cod.payment
    env = Env()
    env.service.registry = registry
    view = env.service.place_order(order_cmd([("A1", 1)], tx_type="cod"))
    assert env.service.pay_order(view.id).payments[0].reference.startswith("cod_")
    assert env.gateway.charges == []
    with pytest.raises(ValueError):
        registry.register("x", nonsense=1)


def test_extend_existing_type():
    registry = default_registry()
    before = registry.get("flash_sale")
    after = registry.extend("flash_sale", split=before.split)
    assert after.pricing is before.pricing and after.name == "flash_sale"


def test_seed_is_idempotent_and_keeps_stock(env):
    env.service.place_order(order_cmd([("A1", 2)]))
    assert env.service.seed(small_catalog()) == {"shops": 0, "products": 0, "stock": 0, "promotions": 0}
    assert env.stock("A1") == (10, 2)


def test_list_shops_and_products(env):
    shops = env.service.list_shops()
    assert [(s.id, s.products) for s in shops] == [("s1", 3), ("s2", 2)]
    products = {p.sku: p for p in env.service.list_products("s2")}
    assert products["B2"].flash.price_cents == 1999 and products["B2"].flash.available == 3
    assert products["B1"].available == 3 and products["B1"].flash is None
    a = {p.sku: p for p in env.service.list_products("s1")}
    assert a["A2"].limit_per_buyer == 2 and "10% off" in a["A1"].promotions
    with pytest.raises(errors.NotFound):
        env.service.list_products("nope")


def test_service_constructs_with_contract_defaults():
    env = Env()
    svc = TradingService(env.store.uow, env.gateway)
    assert svc.list_shops()


def test_events_are_journaled_in_the_same_commit(env):
    view = env.service.place_order(order_cmd([("A1", 1)]))
    assert [e.name for e in env.store.state.journal][-2:] == ["OrderPlaced", "StockReserved"]
    env.service.uow_factory = lambda readonly=False: CommitFails(env.store, readonly=readonly)
    with pytest.raises(RuntimeError):
        env.service.cancel_order(view.id)
    assert [e.name for e in env.store.state.journal][-1] == "StockReserved"


class ErrorCountingGuard:
    """Like a guardians engine: counts exceptions escaping the call as errors of the resource."""

    def __init__(self):
        self.errors: dict[str, int] = {}

    def guard(self, resource, call, *, args=None, fallback=None):
        try:
            return call()
        except BaseException:
            self.errors[resource] = self.errors.get(resource, 0) + 1
            raise


def test_business_refusals_are_not_guard_errors_but_gateway_failures_are():
    env = Env()
    guard = ErrorCountingGuard()
    env.service.guard = guard
    with pytest.raises(errors.OutOfStock):
        env.service.place_order(order_cmd([("B1", 9)]))
    with pytest.raises(errors.UnknownSku):
        env.service.place_order(order_cmd([("ZZ", 1)], key="k2"))
    with pytest.raises(errors.NotFound):
        env.service.get_order("o_missing")
    view = env.service.place_order(order_cmd([("A1", 1)], key="k3"))
    env.gateway.fail_next = ["declined"]
    with pytest.raises(errors.PaymentFailed):
        env.service.pay_order(view.id)
    assert guard.errors == {"payment.charge": 1}


def test_idempotency_race_between_pricing_and_writing_replays_the_winner(env):
    from domain.ports import NoopGuard

    service = env.service
    winner = []

    class RacingGuard:
        def guard(self, resource, call, *, args=None, fallback=None):
            if resource == "inventory.reserve" and not winner:
                service.guard = NoopGuard()  # the twin request slips in between pricing and writing
                winner.append(service.place_order(order_cmd([("A1", 1)])))
            return call()

    service.guard = RacingGuard()
    loser = service.place_order(order_cmd([("A1", 1)]))
    assert loser.id == winner[0].id and loser.replayed
    assert env.stock("A1") == (10, 1) and env.order_count() == 1
