"""In-memory fakes implementing domain.storage ports, plus a fake clock and gateway.

A ``FakeStore`` holds committed state; each ``FakeUnitOfWork`` works on a deep
copy and swaps it in only on commit, so a rollback leaves nothing behind.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from domain.errors import ConcurrentUpdate, DuplicateKey
from domain.model import Order, Product, Promotion, Shop, StockLevel, Warehouse, warehouse_of
from domain.model.auction import AWARDED, OPEN, Auction, Bid
from domain.model.catalog import SHOP_WIDE_PROMOTIONS
from domain.ports import ChargeResult
from domain.storage import AbstractUnitOfWork, OrderCatalog


@dataclass
class State:
    shops: dict[str, Shop] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    promotions: dict[str, Promotion] = field(default_factory=dict)
    stock: dict[tuple[str, str], StockLevel] = field(default_factory=dict)
    limits: dict[tuple[str, str, str], int] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    journal: list = field(default_factory=list)  # domain events committed with their changes
    warehouses: dict[str, Warehouse] = field(default_factory=dict)
    auctions: dict[str, Auction] = field(default_factory=dict)
    bids: list[Bid] = field(default_factory=list)


class FakeStore:
    def __init__(self) -> None:
        self.state = State()
        self.commits = 0

    def uow(self, *, readonly: bool = False) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, readonly=readonly)


class FakeOrders:
    def __init__(self, state: State) -> None:
        self.state = state
        self.seen: list[Order] = []

    def _track(self, order: Order | None) -> Order | None:
        if order is not None:
            order = copy.deepcopy(order)
            self.seen.append(order)
        return order

    def add(self, order: Order) -> None:
        if any(o.buyer_id == order.buyer_id and o.idempotency_key == order.idempotency_key
               for o in self.state.orders.values()):
            raise DuplicateKey("UNIQUE(buyer_id, idempotency_key)")
        stored = copy.deepcopy(order)
        stored.events = []  # events are never stored, only published
        self.state.orders[order.id] = stored
        self.seen.append(order)

    def get(self, order_id: str) -> Order | None:
        return self._track(self.state.orders.get(order_id))

    def track(self, order: Order) -> Order:
        if order not in self.seen:
            self.seen.append(order)
        return order

    def get_by_idempotency_key(self, buyer_id: str, key: str) -> Order | None:
        for o in self.state.orders.values():
            if o.buyer_id == buyer_id and o.idempotency_key == key:
                return self._track(o)
        return None

    def save(self, order: Order) -> None:
        stored = self.state.orders[order.id]
        if stored.version != order.version:
            raise ConcurrentUpdate(f"order {order.id} changed concurrently")
        order.version += 1
        saved = copy.deepcopy(order)
        saved.events = []
        self.state.orders[order.id] = saved

    def head(self, order_id: str) -> tuple[str, str] | None:
        o = self.state.orders.get(order_id)
        return (o.buyer_id, o.sub_orders[0].shop_id) if o else None

    def expired_ids(self, now: datetime, limit: int, queued_grace: timedelta = timedelta(0)) -> list[str]:
        due = [o for o in self.state.orders.values()
               if o.status == "pending_payment" and o.expires_at is not None and o.expires_at <= now
               and (o.queued_payment is None or o.expires_at <= now - queued_grace)]
        return [o.id for o in sorted(due, key=lambda o: o.expires_at)][:limit]  # type: ignore[arg-type,return-value]

    def lapsed_presale_ids(self, now: datetime, limit: int) -> list[str]:
        due = [o for o in self.state.orders.values()
               if o.status == "deposit_paid" and o.expires_at is not None and o.expires_at <= now]
        return [o.id for o in sorted(due, key=lambda o: o.expires_at)][:limit]  # type: ignore[arg-type,return-value]

    def queued_payments(self, limit: int) -> list[tuple[str, str]]:
        queued = [(p.started_at, p.id, o.id) for o in self.state.orders.values() for p in o.payments
                  if p.status == "queued"]
        return [(oid, pid) for _, pid, oid in sorted(queued)][:limit]

    def order_id_for_refund(self, refund_id: str) -> str | None:
        for o in self.state.orders.values():
            if any(r.id == refund_id for r in o.refunds):
                return o.id
        return None

    def order_id_for_sub_order(self, sub_order_id: str) -> str | None:
        for o in self.state.orders.values():
            if any(s.id == sub_order_id for s in o.sub_orders):
                return o.id
        return None

    def delivered_sub_orders(self, limit: int) -> list[tuple[str, str, str, datetime]]:
        due = [(s.delivered_at, s.id, o.id, s.shop_id)
               for o in self.state.orders.values() for s in o.sub_orders
               if s.delivery_status == "delivered" and s.delivered_at is not None]
        return [(oid, sid, shop, at) for at, sid, oid, shop in sorted(due)][:limit]


class FakeCatalog:
    def __init__(self, state: State) -> None:
        self.state = state

    def shops(self) -> list[Shop]:
        return sorted(self.state.shops.values(), key=lambda s: s.id)

    def shop(self, shop_id: str) -> Shop | None:
        return self.state.shops.get(shop_id)

    def products(self, shop_id: str) -> list[Product]:
        return sorted((p for p in self.state.products.values() if p.shop_id == shop_id), key=lambda p: p.sku)

    def products_by_sku(self, skus: Iterable[str]) -> dict[str, Product]:
        return {s: self.state.products[s] for s in skus if s in self.state.products}

    def promotions(self, shop_ids: Iterable[str], skus: Iterable[str] | None = None) -> list[Promotion]:
        ids = set(shop_ids)
        wanted = set(skus) if skus is not None else None
        return [p for p in self.state.promotions.values() if p.shop_id in ids and (
            wanted is None or p.kind in SHOP_WIDE_PROMOTIONS or p.sku is None or p.sku in wanted)]

    def stock(self, skus: Iterable[str]) -> dict[tuple[str, str], StockLevel]:
        wanted = set(skus)
        return {k: v for k, v in self.state.stock.items() if k[0] in wanted}

    def for_order(self, skus: Iterable[str]) -> OrderCatalog:
        skus = list(skus)
        products = self.products_by_sku(skus)
        stock = self.stock(skus)
        held = {warehouse_of(pool) for _, pool in stock}
        return OrderCatalog(products=products,
                            shops={p.shop_id: self.state.shops[p.shop_id] for p in products.values()
                                   if p.shop_id in self.state.shops},
                            stock=stock, warehouses=[w for w in self.warehouses() if w.id in held])

    def add_shop(self, shop: Shop) -> bool:
        return self._add(self.state.shops, shop.id, shop)

    def add_product(self, product: Product) -> bool:
        return self._add(self.state.products, product.sku, product)

    def add_promotion(self, promotion: Promotion) -> bool:
        return self._add(self.state.promotions, promotion.id, promotion)

    def add_stock(self, level: StockLevel) -> bool:
        return self._add(self.state.stock, (level.sku, level.pool), level)

    def warehouses(self) -> list[Warehouse]:
        return sorted(self.state.warehouses.values(), key=lambda w: w.id)

    def add_warehouse(self, warehouse: Warehouse) -> bool:
        return self._add(self.state.warehouses, warehouse.id, warehouse)

    @staticmethod
    def _add(table: dict, key: object, value: object) -> bool:
        if key in table:
            return False
        table[key] = value
        return True


class FakeInventory:
    def __init__(self, state: State) -> None:
        self.state = state

    def _change(self, sku: str, pool: str, d_on_hand: int, d_reserved: int) -> None:
        lv = self.state.stock[(sku, pool)]
        self.state.stock[(sku, pool)] = replace(lv, on_hand=lv.on_hand + d_on_hand,
                                                reserved=lv.reserved + d_reserved)

    def try_reserve(self, sku: str, pool: str, qty: int) -> bool:
        lv = self.state.stock.get((sku, pool))
        if lv is None or lv.available < qty:
            return False
        self._change(sku, pool, 0, qty)
        return True

    def release(self, sku: str, pool: str, qty: int) -> None:
        self._change(sku, pool, 0, -qty)

    def commit_sale(self, sku: str, pool: str, qty: int) -> None:
        self._change(sku, pool, -qty, -qty)

    def restock(self, sku: str, pool: str, qty: int) -> None:
        if (sku, pool) not in self.state.stock:
            self.state.stock[(sku, pool)] = StockLevel(sku, pool, 0, 0)
        self._change(sku, pool, qty, 0)

    def level(self, sku: str, pool: str) -> StockLevel | None:
        return self.state.stock.get((sku, pool))


class FakeLimits:
    def __init__(self, state: State) -> None:
        self.state = state

    def try_consume(self, buyer_id: str, sku: str, key: str, qty: int, max_qty: int) -> bool:
        k = (buyer_id, sku, key)
        if self.state.limits.get(k, 0) + qty > max_qty:
            return False
        self.state.limits[k] = self.state.limits.get(k, 0) + qty
        return True

    def release(self, buyer_id: str, sku: str, key: str, qty: int) -> None:
        k = (buyer_id, sku, key)
        self.state.limits[k] = max(self.state.limits.get(k, 0) - qty, 0)

    def used(self, buyer_id: str, sku: str, key: str) -> int:
        return self.state.limits.get((buyer_id, sku, key), 0)


class FakeAuctions:
    def __init__(self, state: State) -> None:
        self.state = state

    def add(self, auction: Auction) -> bool:
        if auction.id in self.state.auctions:
            return False
        self.state.auctions[auction.id] = copy.deepcopy(auction)
        return True

    def get(self, auction_id: str) -> Auction | None:
        a = self.state.auctions.get(auction_id)
        return copy.deepcopy(a) if a else None

    def try_bid(self, auction_id: str, buyer_id: str, amount_cents: int) -> bool:
        a = self.state.auctions.get(auction_id)
        if a is None or a.status != OPEN or a.next_min_cents > amount_cents:
            return False
        a.current_cents, a.leader_buyer_id = amount_cents, buyer_id
        a.next_min_cents, a.bids, a.version = amount_cents + a.increment_cents, a.bids + 1, a.version + 1
        return True

    def add_bid(self, bid: Bid) -> None:
        self.state.bids.append(copy.deepcopy(bid))

    def bids(self, auction_id: str) -> list[Bid]:
        mine = [b for b in self.state.bids if b.auction_id == auction_id]
        return copy.deepcopy(sorted(mine, key=lambda b: (-b.amount_cents, b.placed_at, b.id)))

    def save(self, auction: Auction) -> None:
        stored = self.state.auctions[auction.id]
        if stored.version != auction.version:
            raise ConcurrentUpdate(f"auction {auction.id} changed")
        auction.version += 1
        self.state.auctions[auction.id] = copy.deepcopy(auction)

    def due(self, now: datetime, limit: int) -> list[str]:
        due = [a for a in self.state.auctions.values()
               if (a.status == OPEN and a.ends_at <= now) or a.status == AWARDED]
        return [a.id for a in sorted(due, key=lambda a: (a.ends_at, a.id))][:limit]

    def skus(self, shop_id: str, now: datetime) -> set[str]:
        return {a.sku for a in self.state.auctions.values()
                if a.shop_id == shop_id and a.status == OPEN and a.ends_at > now}


class FakeUnitOfWork(AbstractUnitOfWork):
    def __init__(self, store: FakeStore, *, readonly: bool = False) -> None:
        super().__init__()
        self.store = store
        self.readonly = readonly

    def __enter__(self) -> FakeUnitOfWork:
        super().__enter__()
        self.work = copy.deepcopy(self.store.state)
        self.orders = FakeOrders(self.work)
        self.catalog = FakeCatalog(self.work)
        self.inventory = FakeInventory(self.work)
        self.limits = FakeLimits(self.work)
        self.auctions = FakeAuctions(self.work)
        return self

    def _commit(self) -> None:
        if self.readonly:
            raise AssertionError("commit on a read-only unit of work")
        committed = self.store.state.orders
        taken = {(c.buyer_id, c.idempotency_key) for c in committed.values()}
        for o in self.work.orders.values():  # the unique index, checked against what others committed
            if o.id not in committed and (o.buyer_id, o.idempotency_key) in taken:
                raise DuplicateKey("UNIQUE(buyer_id, idempotency_key)")
        self.work.journal.extend(self.pending_events())
        self.store.state = self.work
        self.work = copy.deepcopy(self.work)
        self.store.commits += 1

    def _rollback(self) -> None:
        self.work = copy.deepcopy(self.store.state)


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


class FakeGateway:
    def __init__(self) -> None:
        self.fail_next: list[str] = []  # reasons; each charge pops one
        self.raise_next = False
        self.charges: list[tuple[str, str, int]] = []
        self.refunds: list[tuple[str, str, int]] = []
        self.refund_ok = True

    def charge(self, payment_id: str, buyer_id: str, amount_cents: int) -> ChargeResult:
        if self.raise_next:
            self.raise_next = False
            raise ConnectionError("gateway down")
        if self.fail_next:
            return ChargeResult(ok=False, reason=self.fail_next.pop(0))
        self.charges.append((payment_id, buyer_id, amount_cents))
        return ChargeResult(ok=True, reference=f"ch_{payment_id}")

    def refund(self, refund_id: str, payment_reference: str, amount_cents: int) -> ChargeResult:
        if not self.refund_ok:
            return ChargeResult(ok=False, reason="refund declined")
        self.refunds.append((refund_id, payment_reference, amount_cents))
        return ChargeResult(ok=True, reference=f"rf_{refund_id}")
