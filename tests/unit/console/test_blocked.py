"""The Resources page's "who is blocked" reads the blocks measurement: top origins, IPs, buyers, SKUs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collectors.points import block_point
from collectors.stores.embedded import EmbeddedStore
from console.services.blocks import read_blocked


def test_who_is_blocked_ranks_origins_ips_buyers_and_skus(tmp_path):
    store = EmbeddedStore(f"sqlite:///{tmp_path}/m.db")
    now = datetime(2026, 11, 11, 0, 10, tzinfo=UTC)
    sec = int((now - timedelta(seconds=30)).timestamp())
    rows = [
        (("POST /orders", "per-ip", "param", "bot", "client_ip", "203.0.113.7"), 9),
        (("POST /orders", "per-ip", "param", "web", "client_ip", "203.0.113.8"), 2),
        (("POST /orders", "per-buyer", "param", "web", "body:buyer_id", "alice"), 4),
        (("order.place", "hot", "param", "web", "sku", "FLASH-001"), 5),
        (("order.place", "batch", "flow", "batch", "-", "-"), 3),
    ]
    store.write([block_point(sec, k, n, app="a", instance="n1") for k, n in rows])
    store.write([block_point(sec + 1, rows[0][0], 1, app="a", instance="n2")])
    store.write([block_point(sec, rows[0][0], 50, app="other-app", instance="n1")])
    d = read_blocked(store, "a", "5m", now)
    assert d.errors == []
    assert d.total == 24
    assert d.origins[0] == ("web", 11) and ("bot", 10) in d.origins and ("batch", 3) in d.origins
    assert d.client_ips == [("203.0.113.7", 10), ("203.0.113.8", 2)]
    assert d.buyers == [("alice", 4)]
    assert d.skus == [("FLASH-001", 5)]
