from __future__ import annotations

from collections import Counter

from domain.catalog import FLASH_SKUS, demo_catalog
from domain.commands import LineItem, PlaceOrder
from domain.services import TradingService
from tests.unit.domain.fakes import FakeClock, FakeGateway, FakeStore
from tests.unit.domain.helpers import ADDRESS


def test_demo_catalog_shape():
    cat = demo_catalog()
    assert len(cat.shops) == 4 and len(cat.products) == 40
    assert len({p.sku for p in cat.products}) == 40
    kinds = Counter(p.kind for p in cat.promotions)
    assert all(kinds[k] >= 3 for k in ("percent_off", "amount_off", "spend_save", "flash_price"))
    skus = {p.sku for p in cat.products}
    assert all(p.sku in skus for p in cat.promotions if p.sku)
    flash = [p for p in cat.promotions if p.kind == "flash_price"]
    assert all(1 <= p.per_buyer_limit <= 2 and p.price_cents < next(
        x.price_cents for x in cat.products if x.sku == p.sku) for p in flash)
    pools = {(s.sku, s.pool) for s in cat.stock}
    assert all((sku, "flash") in pools for sku in FLASH_SKUS)


def test_demo_catalog_seeds_idempotently_and_sells():
    store = FakeStore()
    svc = TradingService(store.uow, FakeGateway(), clock=FakeClock())
    counts = svc.seed(demo_catalog())
    assert counts["products"] == 40 and svc.seed(demo_catalog())["products"] == 0
    for tx, sku in (("fixed_price", "ELEC-001"), ("flash_sale", FLASH_SKUS[0])):
        view = svc.place_order(PlaceOrder(buyer_id="u", tx_type=tx, channel="web",
                                          lines=[LineItem(sku, 1)], address=ADDRESS, idempotency_key=tx))
        assert svc.pay_order(view.id).status == "paid"
    assert sum(len(svc.list_products(s.id)) for s in svc.list_shops()) == 40
