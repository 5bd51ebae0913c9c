"""A business refusal over HTTP (409/422 of a DomainError on POST /orders) becomes a ``refusals`` point:
the node's HTTP layer reports it through the core's RefusalRecorder port, the collectors count it per
second and write it through the outbox, tagged with the node's instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collectors.query import Query
from tests.unit.tradeguard.test_bootstrap import (  # noqa: F401  (fixtures)
    TestClient,
    node_factory,
    order_body,
    settings,
)


def _refusals(node) -> dict[tuple[str, str, str], float]:
    collection = node.ctx.collection
    collection.tick(final=True)
    collection.flush()
    now = datetime.now(UTC)
    rows = collection.store.query(Query("refusals", ("count",), now - timedelta(minutes=5), now + timedelta(
        seconds=5), "sum", None, {}, ("instance", "resource", "reason")))
    return {(r.tags["instance"], r.tags["resource"], r.tags["reason"]): r.values["count"] for r in rows}


def test_a_refused_order_over_http_is_a_refusals_point(node_factory):  # noqa: F811
    node = node_factory()
    client = TestClient(node.app)
    assert client.post("/orders", json=order_body("ELEC-001", key="ok")).status_code == 201
    over = order_body("ELEC-005", key="limit")
    over["lines"][0]["qty"] = 2  # the 4K monitor: 1 per buyer per day
    limited = client.post("/orders", json=over)
    assert limited.status_code == 409
    kind = limited.json()["type"].rsplit("/", 1)[-1].replace("-", "_")
    unknown = client.post("/orders", json=order_body("NOPE-404", key="unknown"))
    assert unknown.status_code == 422
    assert client.get("/orders/no-such-order").status_code == 404  # nothing refused: not counted

    counts = _refusals(node)
    instance = node.ctx.instance
    assert counts == {
        (instance, "order.place", kind): 1.0,
        (instance, "order.place", "unknown_sku"): 1.0,
    }
    assert kind == "limit"  # 2 of a product limited to 1 per buyer and day: the limit, not the stock (600)


def test_two_nodes_never_overwrite_each_others_refusals(node_factory):  # noqa: F811
    a, b = node_factory(), node_factory()
    for node in (a, b):
        client = TestClient(node.app)
        for i in range(3):
            assert client.post("/orders", json=order_body("NOPE-1", key=f"u{i}")).status_code == 422
    _refusals(a)
    counts = _refusals(b)  # the same metric store and the same seconds: both nodes' points, apart
    assert a.ctx.instance != b.ctx.instance
    assert counts == {
        (a.ctx.instance, "order.place", "unknown_sku"): 3.0,
        (b.ctx.instance, "order.place", "unknown_sku"): 3.0,
    }
