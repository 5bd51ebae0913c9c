"""--tx-mix: parsing, and order bodies of each transaction type from the catalog's tx_types."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tradeguard.traffic import Sku, TrafficError, make_order_body, parse_tx_mix, pick_tx_type

SKUS = [Sku("A", "s1", 100, False, ("fixed_price",)),
        Sku("P", "s1", 900, False, ("fixed_price", "presale")),
        Sku("C", "s2", 200, False, ("fixed_price", "cod")),
        Sku("F", "s2", 50, True, ("fixed_price", "flash_sale"))]


def test_parse_tx_mix():
    assert parse_tx_mix("fixed_price=80,presale=10,cod=10") == {
        "fixed_price": 0.8, "presale": 0.1, "cod": 0.1}
    for bad in ("lottery=1", "cod", "cod=x", "cod=-1", "cod=0"):
        with pytest.raises(TrafficError):
            parse_tx_mix(bad)


def test_bodies_follow_the_mix():
    rng = random.Random(7)
    mix = parse_tx_mix("fixed_price=50,presale=25,cod=25")
    bodies = [make_order_body(rng, SKUS, False, 100, f"k{i}", pick_tx_type(rng, mix)) for i in range(400)]
    kinds = Counter(b["tx_type"] for b in bodies)
    assert set(kinds) == {"fixed_price", "presale", "cod"} and 60 < kinds["presale"] < 140
    assert all(b["lines"] == [{"sku": "P", "qty": 1}] and b["stage"] == "deposit"
               for b in bodies if b["tx_type"] == "presale")
    assert all(b["lines"][0]["sku"] == "C" and "stage" not in b for b in bodies if b["tx_type"] == "cod")
