"""``tradeguard events tail`` and ``events replay`` through the CLI entry point."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from collectors.query import Query
from collectors.registry import open_store
from domain.adapters.unit_of_work import build_trading_db
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeGateway
from tests.unit.domain.helpers import order_cmd, small_catalog
from tradeguard.cli import main


@pytest.fixture
def var(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEGUARD_VAR_DIR", str(tmp_path / "var"))
    for name in ("TRADEGUARD_TRADING_DB", "TRADEGUARD_CONTROL_DB", "TRADEGUARD_METRICS_URL",
                 "TRADEGUARD_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "var").mkdir()
    db = build_trading_db(f"sqlite:///{tmp_path / 'var' / 'trading.db'}")
    service = TradingService(db.uow_factory, FakeGateway(), publisher=CollectingPublisher(),
                             sleep=lambda s: None)
    service.seed(small_catalog())
    ids = []
    for i in range(3):
        view = service.place_order(order_cmd([("A1", 1), ("B1", 1)], buyer=f"u{i}", key=f"k{i}"))
        service.pay_order(view.id)
        ids.append(view.id)
    for i, sub in enumerate(service.get_order(ids[0]).sub_orders + service.get_order(ids[1]).sub_orders):
        service.ship(sub.id, "SF", f"T{i}")
        if i < 3:
            service.deliver(sub.id)
        if i < 1:
            service.receive(sub.id)
    db.dispose()
    return tmp_path / "var", ids


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_tail_prints_json_lines_filtered_by_name_and_order(var, capsys):
    _, ids = var
    assert main(["events", "tail", "-n", "1000"]) == 0
    everything = _lines(capsys)
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything) and len(everything) > 6
    assert main(["events", "tail", "--name", "OrderPaid", "-n", "1000"]) == 0
    paid = _lines(capsys)
    assert len(paid) == 6 and {e["name"] for e in paid} == {"OrderPaid"}  # 3 orders × 2 shops
    assert main(["events", "tail", "--order", ids[1], "-n", "1000"]) == 0
    one = _lines(capsys)
    assert one and {e["order_id"] for e in one} == {ids[1]}
    assert {"OrderPlaced", "OrderPaid", "PaymentSucceeded"} <= {e["name"] for e in one}


def test_replay_rebuilds_the_points_idempotently(var, capsys):
    var_dir, _ = var
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).isoformat(), (now + timedelta(minutes=1)).isoformat()
    for _ in range(2):
        assert main(["events", "replay", "--from", start, "--to", end]) == 0
        assert _lines(capsys)[-1]["points"] > 0
        store = open_store(f"sqlite:///{var_dir / 'metrics.db'}")
        q = Query("orders", ["placed", "paid"], now - timedelta(hours=1), now + timedelta(minutes=1))
        rows = store.query(q)
        assert sum(r.values["placed"] for r in rows) == 6 and sum(r.values["paid"] for r in rows) == 6
        # deliveries too: 4 sub-orders shipped, 3 delivered, 1 received
        q = Query("deliveries", ["shipped", "delivered", "received"], now - timedelta(hours=1),
                  now + timedelta(minutes=1), group_by=["carrier"])
        got = {r.tags["carrier"]: {k: v for k, v in r.values.items() if v} for r in store.query(q)}
        assert got == {"SF": {"shipped": 4.0}, "-": {"delivered": 3.0, "received": 1.0}}
        store.close()
    assert main(["events", "replay", "--from", end, "--to", start]) == 2
