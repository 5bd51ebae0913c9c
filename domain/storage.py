"""Storage ports of the trading core: repository, stores and the unit of work.

``domain.adapters`` implements them with SQLAlchemy; unit tests implement them
in memory. The services depend only on these Protocols.

Stock and purchase-limit counters are not loaded into aggregates: they are
shared by every order, so they change by *conditional atomic updates*
(``try_reserve`` / ``try_consume`` answer False instead of overselling), inside
the same unit of work as the order that needs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from domain.events import DomainEvent
from domain.model import Order, Product, Promotion, Shop, StockLevel, Warehouse
from domain.model.auction import Auction, Bid


@dataclass
class OrderCatalog:
    """What pricing an order reads of the catalog, for its SKUs (``CatalogStore.for_order``)."""

    products: dict[str, Product]  # sku -> product (SKUs not in the catalog are absent)
    shops: dict[str, Shop]  # the products' shops
    stock: dict[tuple[str, str], StockLevel]  # (sku, pool) -> level, every pool of those SKUs
    warehouses: list[Warehouse]  # the warehouses of those pools


class OrderRepository(Protocol):
    def add(self, order: Order) -> None: ...

    def track(self, order: Order) -> Order:
        """Take ``order`` as loaded in this unit of work: it is the persisted state at its version (an
        order the request's previous unit of work saved), so it need not be read again; ``save`` stays
        version-checked, refusing it with ``ConcurrentUpdate`` if the stored order moved on."""
        ...

    def get(self, order_id: str) -> Order | None: ...

    def get_by_idempotency_key(self, buyer_id: str, key: str) -> Order | None: ...

    def save(self, order: Order) -> None:
        """Persist changes; raises ``ConcurrentUpdate`` if the stored version moved on."""
        ...

    def head(self, order_id: str) -> tuple[str, str] | None:
        """(buyer_id, first shop id) of an order, cheaply (guard arguments), or None."""
        ...

    def expired_ids(self, now: datetime, limit: int, queued_grace: timedelta = timedelta(0)) -> list[str]:
        """Ids of ``pending_payment`` orders past their deadline, oldest first; an order whose payment
        is queued is due only ``queued_grace`` after its deadline."""
        ...

    def lapsed_presale_ids(self, now: datetime, limit: int) -> list[str]:
        """Ids of presale orders still ``deposit_paid`` whose balance window closed (``expires_at``)."""
        ...

    def queued_payments(self, limit: int) -> list[tuple[str, str]]:
        """(order_id, payment_id) of payments in state ``queued``, oldest first."""
        ...

    def order_id_for_refund(self, refund_id: str) -> str | None: ...

    def order_id_for_sub_order(self, sub_order_id: str) -> str | None: ...

    def delivered_sub_orders(self, limit: int) -> list[tuple[str, str, str, datetime]]:
        """(order_id, sub_order_id, shop_id, delivered_at) of sub-orders delivered and not yet
        received, oldest delivery first (the auto-receive job's candidates)."""
        ...

    @property
    def seen(self) -> list[Order]: ...


class CatalogStore(Protocol):
    def shops(self) -> list[Shop]: ...

    def shop(self, shop_id: str) -> Shop | None: ...

    def products(self, shop_id: str) -> list[Product]: ...

    def products_by_sku(self, skus: Iterable[str]) -> dict[str, Product]: ...

    def promotions(self, shop_ids: Iterable[str], skus: Iterable[str] | None = None) -> list[Promotion]:
        """Promotions of the shops (by id); with ``skus``, only shop-wide ones and those of these SKUs."""
        ...

    def stock(self, skus: Iterable[str]) -> dict[tuple[str, str], StockLevel]: ...

    def for_order(self, skus: Iterable[str]) -> OrderCatalog:
        """Products of ``skus``, their shops, their stock in every pool and the warehouses holding it
        (one read where the store allows)."""
        ...

    # seeding: insert when absent, answer whether something was inserted
    def add_shop(self, shop: Shop) -> bool: ...

    def add_product(self, product: Product) -> bool: ...

    def add_promotion(self, promotion: Promotion) -> bool: ...

    def add_stock(self, level: StockLevel) -> bool: ...

    def warehouses(self) -> list[Warehouse]: ...

    def add_warehouse(self, warehouse: Warehouse) -> bool: ...


class InventoryStore(Protocol):
    def try_reserve(self, sku: str, pool: str, qty: int) -> bool:
        """reserved += qty iff on_hand - reserved >= qty, atomically."""
        ...

    def release(self, sku: str, pool: str, qty: int) -> None:
        """reserved -= qty (an unpaid order went away)."""
        ...

    def commit_sale(self, sku: str, pool: str, qty: int) -> None:
        """on_hand -= qty and reserved -= qty (the reserved units were paid for)."""
        ...

    def restock(self, sku: str, pool: str, qty: int) -> None:
        """on_hand += qty (refunded units came back)."""
        ...

    def level(self, sku: str, pool: str) -> StockLevel | None: ...


class LimitCounters(Protocol):
    def try_consume(self, buyer_id: str, sku: str, key: str, qty: int, max_qty: int) -> bool:
        """used += qty iff used + qty <= max_qty, atomically (creating the counter at 0)."""
        ...

    def release(self, buyer_id: str, sku: str, key: str, qty: int) -> None: ...

    def used(self, buyer_id: str, sku: str, key: str) -> int: ...


class AuctionStore(Protocol):
    def add(self, auction: Auction) -> bool:
        """Insert when absent (seeding is idempotent); True if inserted."""
        ...

    def get(self, auction_id: str) -> Auction | None: ...

    def try_bid(self, auction_id: str, buyer_id: str, amount_cents: int) -> bool:
        """Lead with ``amount_cents`` iff it reaches ``next_min_cents`` and the auction is open, in ONE
        conditional UPDATE (concurrent bids serialize on it: no lost update)."""
        ...

    def add_bid(self, bid: Bid) -> None: ...

    def bids(self, auction_id: str) -> list[Bid]:
        """All bids, highest amount first (then the earliest)."""
        ...

    def save(self, auction: Auction) -> None:
        """Status/award changes, version-checked (``ConcurrentUpdate`` otherwise)."""
        ...

    def due(self, now: datetime, limit: int) -> list[str]:
        """Ids of open auctions past their end, and of awarded ones (their order may have settled)."""
        ...

    def skus(self, shop_id: str, now: datetime) -> set[str]:
        """SKUs of the shop's open auctions not yet ended."""
        ...


class UnitOfWork(Protocol):
    orders: OrderRepository
    catalog: CatalogStore
    inventory: InventoryStore
    limits: LimitCounters
    auctions: AuctionStore

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, *exc: Any) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def collect_new_events(self) -> list[DomainEvent]: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, readonly: bool = False) -> UnitOfWork: ...


class AbstractUnitOfWork:
    """Shared behaviour: rolls back unless committed; collects events of the aggregates it saw."""

    orders: OrderRepository
    catalog: CatalogStore
    inventory: InventoryStore
    limits: LimitCounters
    auctions: AuctionStore

    def __init__(self) -> None:
        self.committed = False
        self.recorded: list[DomainEvent] = []  # events of no order aggregate (auctions, bids)

    def record(self, event: DomainEvent) -> None:
        self.recorded.append(event)

    def __enter__(self) -> AbstractUnitOfWork:
        self.committed = False
        self.recorded = []
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.committed:
            self.rollback()

    def commit(self) -> None:
        self._commit()
        self.committed = True

    def pending_events(self) -> list[DomainEvent]:
        """Events recorded by the aggregates seen so far (not yet collected); journaled at commit."""
        return [e for order in self.orders.seen for e in order.events] + list(self.recorded)

    def rollback(self) -> None:
        self._rollback()

    def collect_new_events(self) -> list[DomainEvent]:
        out: list[DomainEvent] = []
        for order in self.orders.seen:
            out.extend(order.events)
            order.events.clear()
        out.extend(self.recorded)
        self.recorded.clear()
        return out

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError
