from __future__ import annotations

from domain.commands import LineItem, PlaceOrder
from domain.model import Catalog, Product, Promotion, PurchaseLimit, Shop, StockLevel
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeClock, FakeGateway, FakeStore

ADDRESS = {"country": "CN", "province": "Zhejiang", "city": "Hangzhou", "district": "Xihu",
           "street": "1 Wensan Rd", "recipient": "Li Lei", "phone": "+86 138 0000 0000"}


def small_catalog() -> Catalog:
    return Catalog(
        shops=[Shop("s1", "Alpha"), Shop("s2", "Beta")],
        products=[
            Product("A1", "s1", "Mug", 1000),
            Product("A2", "s1", "Kettle", 2500, PurchaseLimit(2, "day")),
            Product("A3", "s1", "Spoon", 500),
            Product("B1", "s2", "Lamp", 3000),
            Product("B2", "s2", "Phone", 4000),
        ],
        stock=[
            StockLevel("A1", "default", 10), StockLevel("A2", "default", 5), StockLevel("A3", "default", 100),
            StockLevel("B1", "default", 3), StockLevel("B2", "default", 0), StockLevel("B2", "flash", 3),
        ],
        promotions=[
            Promotion("p-pct", "s1", "percent_off", sku="A1", percent=10),
            Promotion("p-amt", "s1", "amount_off", sku="A3", amount_cents=100),
            Promotion("p-ss1", "s1", "spend_save", amount_cents=500, threshold_cents=5000),
            Promotion("p-ss2", "s1", "spend_save", amount_cents=1500, threshold_cents=10000),
            Promotion("p-flash", "s2", "flash_price", sku="B2", price_cents=1999, stock=3, per_buyer_limit=1),
        ],
    )


class Env:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.clock = FakeClock()
        self.gateway = FakeGateway()
        self.publisher = CollectingPublisher()
        self.service = TradingService(self.store.uow, self.gateway, publisher=self.publisher,
                                      clock=self.clock,
                                      sleep=lambda s: None)
        self.service.seed(small_catalog())

    def stock(self, sku: str, pool: str = "default") -> tuple[int, int]:
        lv = self.store.state.stock[(sku, pool)]
        return lv.on_hand, lv.reserved

    def order_count(self) -> int:
        return len(self.store.state.orders)

    def limit_used(self, buyer: str, sku: str, key: str) -> int:
        return self.store.state.limits.get((buyer, sku, key), 0)

    def event_names(self) -> list[str]:
        return [e.name for e in self.publisher.events]


def order_cmd(lines, *, buyer="u1", key="k1", tx_type="fixed_price", channel="app",
              address=None) -> PlaceOrder:
    return PlaceOrder(buyer_id=buyer, tx_type=tx_type, channel=channel,
                      lines=[LineItem(s, q) for s, q in lines], address=address or dict(ADDRESS),
                      idempotency_key=key)
