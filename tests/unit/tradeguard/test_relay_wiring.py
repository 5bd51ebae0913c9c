"""The worker's journal relay, built from settings as `tradeguard worker` builds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collectors.query import Query
from collectors.registry import open_store
from domain.adapters.unit_of_work import build_trading_db
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeGateway
from tests.unit.domain.helpers import order_cmd, small_catalog
from tradeguard.bootstrap import build_relay, build_worker, relay_health
from tradeguard.settings import load_settings


def test_the_worker_relay_turns_orders_into_points_and_reports_its_lag(tmp_path):
    settings = load_settings(var_dir=tmp_path / "var")
    settings.ensure_var_dir()
    trading = build_trading_db(settings.trading_db)
    service = TradingService(trading.uow_factory, FakeGateway(), publisher=CollectingPublisher(),
                             sleep=lambda s: None)
    service.seed(small_catalog())
    for i in range(3):
        view = service.place_order(order_cmd([("A1", 1)], buyer=f"u{i}", key=f"k{i}"))
        service.pay_order(view.id)

    worker = build_worker(settings)
    fn, seconds = worker.jobs()["relay"]
    assert seconds == 1.0
    fn()  # one scheduled cycle
    relay = worker.relay
    assert relay.last is not None and relay.last.leader

    store = open_store(settings.metrics_url)
    now = datetime.now(UTC)
    q = Query("orders", ["placed", "paid"], now - timedelta(hours=1), now + timedelta(minutes=1))
    rows = store.query(q)
    assert sum(r.values["placed"] for r in rows) == 3 and sum(r.values["paid"] for r in rows) == 3
    health = relay_health(settings)
    assert health["lag_s"] == 0.0 and health["cursor"] > 0 and health["leader"] == relay.control.holder
    # a second worker's relay stands by while the first holds the lease
    other = build_relay(settings)
    assert not other.run_once().leader
    worker.close()  # hands the lease over at once
    assert other.run_once().leader
    other.close()
    trading.dispose()


def test_worker_once_runs_the_relay_only_when_it_leads(tmp_path):
    settings = load_settings(var_dir=tmp_path / "var")
    settings.ensure_var_dir()
    trading = build_trading_db(settings.trading_db)
    service = TradingService(trading.uow_factory, FakeGateway(), publisher=CollectingPublisher(),
                             sleep=lambda s: None)
    service.seed(small_catalog())
    service.place_order(order_cmd([("A1", 1)], buyer="u1", key="k1"))
    leader = build_worker(settings)
    assert leader.tick() == "leader"  # a running worker leads
    standby = build_worker(settings)
    out = standby.once()
    assert out == {"leader": False, "role": "standby"}
    assert standby.relay.last is None  # no relay cycle: not even an attempt at the journal lease
    leader.close()
    out = standby.once()
    assert out.get("leader") is not False and standby.relay.last is not None and standby.relay.last.leader
    standby.close()
    trading.dispose()
