"""Catalog and environment for the cod / presale / auction tests (fake store, fake clock)."""

from __future__ import annotations

from datetime import timedelta

from domain.model import Catalog, Product, Promotion, Shop, StockLevel
from domain.ports import CollectingPublisher
from domain.services import TradingService
from tests.unit.domain.fakes import FakeClock, FakeGateway, FakeStore
from tests.unit.domain.helpers import order_cmd

START = FakeClock().now()
BALANCE_OPENS = START + timedelta(days=2)
BALANCE_CLOSES = BALANCE_OPENS + timedelta(days=1)


def tx_catalog(refundable: bool = False) -> Catalog:
    return Catalog(
        shops=[Shop("c1", "Cash Shop", cod_max_order_cents=5000, cod_max_qty_per_day=3),
               Shop("p1", "Presale Shop", presale_deposit_refundable=refundable),
               Shop("n1", "Online Only")],
        products=[Product("C1", "c1", "Rice", 1000), Product("C2", "c1", "Oil", 3000),
                  Product("P1", "p1", "Console", 50000), Product("N1", "n1", "Pen", 500)],
        stock=[StockLevel("C1", "default", 10), StockLevel("C2", "default", 10),
               StockLevel("P1", "default", 3), StockLevel("N1", "default", 10)],
        promotions=[Promotion("pre-p1", "p1", "presale", sku="P1", price_cents=45000, amount_cents=5000,
                              per_buyer_limit=2, balance_starts_at=BALANCE_OPENS,
                              balance_ends_at=BALANCE_CLOSES)],
    )


class TxEnv:
    def __init__(self, refundable: bool = False) -> None:
        self.store = FakeStore()
        self.clock = FakeClock(START)
        self.gateway = FakeGateway()
        self.publisher = CollectingPublisher()
        self.service = TradingService(self.store.uow, self.gateway, publisher=self.publisher,
                                      clock=self.clock, sleep=lambda s: None)
        self.service.seed(tx_catalog(refundable))

    def stock(self, sku: str, pool: str = "default") -> tuple[int, int]:
        lv = self.store.state.stock[(sku, pool)]
        return lv.on_hand, lv.reserved

    def events(self, name: str) -> list:
        return [e for e in self.publisher.events if e.name == name]

    def place(self, lines, tx_type: str, key: str = "k1", buyer: str = "u1", stage: str | None = None):
        cmd = order_cmd(lines, buyer=buyer, key=key, tx_type=tx_type)
        if stage is not None:
            from dataclasses import replace
            cmd = replace(cmd, extra={"stage": stage})
        return self.service.place_order(cmd)
