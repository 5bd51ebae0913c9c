"""Payments per node (the charging node named on its payment events), relay status in /ops/health and
on the Instances page."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from collectors.query import Query
from collectors.relay import relay_check
from console.services.instances import relay_view
from domain.adapters.unit_of_work import build_trading_db
from domain.errors import PaymentFailed as PaymentDeclined
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.collectors.relay_env import RelayEnv
from tests.unit.domain.fakes import FakeGateway
from tests.unit.domain.helpers import order_cmd


@pytest.fixture
def env(tmp_path):
    db = build_trading_db(f"sqlite:///{tmp_path / 'trading.db'}")
    e = RelayEnv(db, tmp_path)
    yield e
    db.dispose()


def _node(env: RelayEnv, name: str, gateway: FakeGateway | None = None) -> TradingService:
    return TradingService(env.db.uow_factory, gateway or FakeGateway(), publisher=CollectingPublisher(),
                          clock=env.clock, sleep=lambda s: None, instance=name)


def test_payment_events_name_the_charging_node_and_payments_are_tagged_per_node(env):
    gateway_b = FakeGateway()
    gateway_b.fail_next = ["declined"]  # node-b's first charge fails: PaymentFailed names it too
    a, b = _node(env, "node-a"), _node(env, "node-b", gateway_b)
    for i, svc in enumerate([a, b, a, b, b]):
        view = svc.place_order(order_cmd([("A1", 1)], buyer=f"p{i}", key=f"pk{i}"))
        try:
            svc.pay_order(view.id)
        except PaymentDeclined:
            svc.pay_order(view.id)
    env.place([("A1", 1)], pay=True)  # a service without a node name: the fleet series "all"
    rows = env.journal.read_after((0, 0), 10_000)
    named = Counter(r.payload.get("instance") for r in rows if r.name == "PaymentSucceeded")
    assert named == Counter({"node-a": 2, "node-b": 3, None: 1})
    assert [r.payload.get("instance") for r in rows if r.name == "PaymentFailed"] == ["node-b"]
    assert env.relay().run_once().error is None
    now = env.clock.now()
    got = env.store.query(Query("payments", ["success"], now - timedelta(hours=1), now + timedelta(hours=1),
                                group_by=["instance"], aggregate="sum"))
    per_node = {r.tags["instance"]: r.values["success"] for r in got}
    assert per_node == {"node-a": 2, "node-b": 3, "all": 1}
    span = (now - timedelta(hours=1), now + timedelta(hours=1))
    failed = env.store.query(Query("payments", ["failure"], *span, group_by=["instance"], aggregate="sum"))
    assert {r.tags["instance"]: r.values["failure"] for r in failed if r.values["failure"]} == {"node-b": 1}
    assert sum(per_node.values()) == sum(1 for r in rows if r.name == "PaymentSucceeded")  # exact


def test_relay_check_states():
    base = {"leader": "w1", "token": 3, "cursor": 42, "lag_s": 0.5, "last_cycle_age_s": 1.0, "error": None}
    assert relay_check(base)["status"] == "ok"
    assert relay_check(base)["relay_lag_s"] == 0.5 and relay_check(base)["relay_cursor"] == 42
    assert relay_check({**base, "lag_s": 31.0})["status"] == "lagging"
    assert relay_check({**base, "leader": None})["status"] == "stale"
    assert relay_check({**base, "last_cycle_age_s": 45.0})["status"] == "stale"
    assert relay_check({**base, "error": "BrokerUnavailable: down"})["status"] == "error"
    assert relay_check({**base, "leader": None, "last_cycle_age_s": None})["status"] == "absent"


def test_relay_status_from_the_control_db_for_health_and_console(env):
    env.place([("A1", 1)], pay=True)
    relay = env.relay(holder="w1")
    probe = type(relay.control)(env.control_db, holder="probe", clock=env.clock)
    assert relay_check(probe.status())["status"] == "absent"
    assert relay.run_once().error is None
    status = relay_check(probe.status())
    assert status["status"] == "ok" and status["leader"] == "w1"
    assert status["relay_cursor"] == env.journal.tail(last=1)[0].id

    view = relay_view(probe.status())  # the console's Instances page (ConsoleServices.relay_status)
    assert view.state == "ok" and view.cursor == status["relay_cursor"]
    env.clock.advance(seconds=60)  # the worker stopped: its lease expired, no cycle since
    assert relay_view(probe.status()).state == "stale"
    assert relay_view(None).state == "absent"
