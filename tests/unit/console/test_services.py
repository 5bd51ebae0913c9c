"""The console facade against the embedded metric store (SQLite in tmp_path) and fake control stores."""

from __future__ import annotations

import pandas as pd
import pytest

from console.services import RuleDocumentInvalid, unified_diff
from dashboards.impact import FlowProposal

from .fakes import node
from .points import breaker_point, delivery_point, order_point, payment_point, resource_point


def _second(clock, back: int) -> int:
    return int(clock.now().timestamp()) - back


def test_overview_empty_store_says_no_data_within_the_query_budget(svc, metrics):
    data = svc.overview("5m")
    assert not data.has_data
    assert data.queries == metrics.queries == 13
    assert data.kpis["payment_success_pct"] is None and data.kpis["blocked_share_pct"] is None
    assert data.breakers_open == [] and data.errors == []
    assert len(data.orders) == 150  # every 2 s bucket present, zero-filled


def test_overview_rates_shares_and_breakers(svc, metrics, clock):
    s = _second(clock, 30)
    s -= s % 2  # one 2 s bucket
    metrics.write(
        [
            order_point(s, placed=6, paid=4, gmv=120.0),
            order_point(s, placed=2, paid=0, gmv=30.0, shop="s2"),
            payment_point(s, success=9, failure=1),
            resource_point(s, "order.place", passed=8, block_flow=3, block_param=1, rt=40.0),
            resource_point(s, "payment.charge", passed=10, block_breaker=4),
            breaker_point(s - 100, "payment.charge", state=1, previous=0),
            breaker_point(s - 100, "order.pay", state=1, previous=0),
            breaker_point(s - 50, "order.pay", state=0, previous=2),
        ]
    )
    data = svc.overview("5m")
    assert data.has_data and data.queries == 13 and data.errors == []
    bucket = pd.Timestamp(s, unit="s", tz="UTC")
    assert data.orders.loc[bucket, "placed"] == 4.0  # 8 orders in a 2 s bucket
    assert data.orders.loc[bucket, "paid"] == 2.0
    assert data.blocked.loc[bucket].to_dict() == {"flow": 1.5, "param": 0.5, "system": 0.0, "breaker": 2.0}
    assert data.payment_success.loc[bucket] == pytest.approx(90.0)
    assert data.kpis["placed"] == 8 and data.kpis["paid"] == 4
    assert data.kpis["blocked_share_pct"] == pytest.approx(100 * 8 / 26)
    assert data.kpis["rt_p99_ms"] == pytest.approx(80.0)
    assert data.kpis["gmv"] == pytest.approx(150.0)
    assert [(b.resource, b.state) for b in data.breakers_open] == [("payment.charge", "open")]


def test_resources_table_and_detail(svc, metrics, clock):
    s = _second(clock, 20)
    metrics.write(
        [
            resource_point(s, "order.place", passed=8, block_flow=2, error=2, rt=30.0),
            resource_point(s - 1, "order.place", passed=4, rt=10.0),
            resource_point(s, "order.get", passed=1),
        ]
    )
    svc.rules.apply(
        "shop",
        {
            "flow": [{"resource": "order.place", "threshold": 9}],
            "breaker": [{"resource": "payment.charge", "strategy": "error_count", "threshold": 3}],
        },
        "ann",
        "setup",
    )
    table = svc.resources("5m")
    assert table.queries == 4
    top = table.rows[0]
    assert (top.resource, top.passed, top.blocked, top.error) == ("order.place", 12, 2, 2)
    assert top.block_share_pct == pytest.approx(100 * 2 / 14)
    assert top.rt_avg_ms == pytest.approx(20.0)
    assert [r.resource for r in table.rows] == ["order.place", "order.get"]
    detail = svc.resource_detail("order.place", "5m")
    assert detail.queries == 4 and detail.has_data  # calls, RT, refusals and the rule read
    assert list(detail.rules) == ["flow"] and detail.rules["flow"][0]["threshold"] == 9
    assert detail.rule_version == 1


def test_rules_validate_apply_history_rollback(svc):
    bad = {"flow": [{"resource": "order.place", "threshold": -1, "grade": "bogus"}]}
    paths = {e.path for e in svc.validate(bad)}
    assert {"flow[0].threshold", "flow[0].grade"} <= paths
    with pytest.raises(RuleDocumentInvalid) as exc:
        svc.apply({"flow": [{"resource": "order.place", "threshold": 5}]}, "", " ")
    assert {e.path for e in exc.value.errors} == {"by", "why"}
    assert svc.rules_in_force() is None
    v1 = svc.apply({"flow": [{"resource": "order.place", "threshold": 50}]}, "ann", "baseline")
    v2 = svc.apply({"flow": [{"resource": "order.place", "threshold": 20}]}, "bob", "flash sale")
    assert (v1, v2) == (1, 2)
    assert svc.rules_in_force().document["flow"][0]["threshold"] == 20
    diff = svc.diff({"flow": [{"resource": "order.place", "threshold": 5}]})
    assert "threshold: 20" in diff and "threshold: 5" in diff
    assert "version 2 (in force)" in diff
    assert [(h.version, h.by, h.why) for h in svc.history()] == [
        (2, "bob", "flash sale"),
        (1, "ann", "baseline"),
    ]
    v3 = svc.rollback(1, "carol", "sale over")
    assert v3 == 3 and svc.rules_in_force().document["flow"][0]["threshold"] == 50
    with pytest.raises(RuleDocumentInvalid):
        svc.rollback(1, "carol", "")


def test_parse_yaml_names_line_and_rejects_non_mappings(svc):
    doc, errors = svc.parse_yaml("flow:\n  - {resource: order.place, threshold: [\n")
    assert doc is None and errors[0].path.startswith("line ")
    doc, errors = svc.parse_yaml("- 1\n- 2\n")
    assert doc is None and "mapping" in errors[0].message
    doc, errors = svc.parse_yaml("flow:\n  - {resource: order.place, threshold: 0}\n")
    assert doc is not None and errors[0].path == "flow[0].threshold"


def test_unified_diff_is_empty_without_changes():
    doc = {"flow": [{"resource": "a", "threshold": 1}]}
    assert unified_diff(doc, doc, "a", "b") == ""


def test_unified_diff_against_no_rules_only_adds():
    doc = {"flow": [{"resource": "r", "threshold": 5}]}
    diff = unified_diff({}, doc, "no rules yet", "proposed")
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert removed == [] and "+flow:" in diff  # not '-{}', read as a rule removed


def test_impact_replays_the_recorded_seconds(svc, metrics, clock):
    base = _second(clock, 100)
    metrics.write(
        [
            resource_point(base, "order.place", passed=8, block_flow=2, rt=50.0),  # offered 10
            resource_point(base + 1, "order.place", passed=3, rt=100.0),  # 3
            resource_point(base + 2, "order.place", passed=12, block_system=3, rt=200.0),  # 15
            resource_point(base + 2, "order.get", passed=100),  # another resource: ignored
        ]
    )
    metrics.queries = 0
    result = svc.impact("order.place", FlowProposal(threshold=5), minutes=5)
    assert metrics.queries == 1
    assert (result.offered, result.would_pass, result.would_block, result.blocked_now) == (28, 13, 15, 5)
    assert [s.would_block for s in result.seconds] == [5, 0, 10]
    with pytest.raises(ValueError, match="minutes"):
        svc.impact("order.place", FlowProposal(threshold=5), minutes=0)


def test_instances_flag_nodes_on_an_old_rule_version(svc, clock):
    svc.rules.apply("shop", {"flow": [{"resource": "a", "threshold": 1}]}, "a", "b")
    svc.rules.apply("shop", {"flow": [{"resource": "a", "threshold": 2}]}, "a", "b")
    now = clock.now()
    svc.fleet.nodes_ = [
        node("n2", "127.0.0.1:8002", "stale", "0.1.0", 1, now, now),
        node("n1", "127.0.0.1:8001", "live", "0.1.0", 2, now, now),
        node("n3", "127.0.0.1:8003", "gone", "0.1.0", 1, now, None),
        node("n4", "127.0.0.1:8004", "live", "0.1.0", 1, now, now),
    ]
    data = svc.instances()
    assert data.rule_version_in_force == 2 and data.queries == 2
    assert [(n.instance, n.outdated) for n in data.nodes] == [
        ("n1", False),
        ("n4", True),
        ("n2", True),
        ("n3", False),
    ]


def test_store_failures_become_messages_not_exceptions(svc, metrics):
    def boom(query):
        raise RuntimeError("metric store down")

    metrics.inner.query = boom
    data = svc.overview("15m")
    assert not data.has_data
    assert any("metric store down" in e for e in data.errors)


def test_store_without_percentiles_falls_back_to_mean_and_max(svc, metrics, clock):
    s = int(clock.now().timestamp()) - 20
    metrics.write([resource_point(s, "order.place", passed=5, rt=12.0)])
    real = metrics.inner.query

    def no_percentiles(query):
        if query.aggregate.startswith("p"):
            raise ValueError(f"aggregate {query.aggregate} unsupported by this store")
        return real(query)

    metrics.inner.query = no_percentiles
    data = svc.overview("5m")
    assert data.queries == 16 and data.errors == []
    assert data.kpis["rt_p99_ms"] == pytest.approx(24.0)  # max of rt_max_ms
    assert data.rt["p50"].max() == pytest.approx(12.0)  # mean of rt_avg_ms


def test_overview_fulfilment_per_minute_from_the_deliveries_figure(svc, metrics, clock):
    s = _second(clock, 90)
    s -= s % 60  # inside one minute
    metrics.write([
        delivery_point(s, shipped=4, carrier="SF"),
        delivery_point(s + 1, shipped=2, carrier="YTO", shop="s2"),
        delivery_point(s + 5, delivered=3, received=1),
        delivery_point(s + 70, delivered=1, received=2, auto_received=1, tx_type="cod"),
        delivery_point(s - 3600, shipped=99),  # outside the 5 min range
    ])
    data = svc.overview("5m")
    assert data.has_data and data.errors == []
    minute = pd.Timestamp(s, unit="s", tz="UTC")
    assert data.deliveries.loc[minute].to_dict() == {"shipped": 6.0, "delivered": 3.0, "received": 1.0}
    later = pd.Timestamp(s + 60, unit="s", tz="UTC")
    assert data.deliveries.loc[later].to_dict() == {"shipped": 0.0, "delivered": 1.0, "received": 2.0}
    assert (data.kpis["shipped"], data.kpis["delivered"], data.kpis["received"]) == (6.0, 4.0, 3.0)


def test_overview_with_only_deliveries_has_data(svc, metrics, clock):
    metrics.write([delivery_point(_second(clock, 30), received=1)])
    data = svc.overview("15m")
    assert data.has_data and data.kpis["received"] == 1.0 and data.kpis["shipped"] == 0.0
