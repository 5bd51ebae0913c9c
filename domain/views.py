"""Read models returned by the application services (plain frozen values)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from domain.model import Order, Product, Refund, Shop, StockLevel
from domain.model.auction import Auction, Bid
from domain.model.catalog import DEFAULT_POOL, FLASH_POOL, Promotion, warehouse_of


@dataclass(frozen=True)
class LineView:
    sku: str
    name: str
    qty: int
    list_price_cents: int
    unit_price_cents: int
    discount_cents: int
    amount_cents: int
    refunded_qty: int
    refund_requested_qty: int


@dataclass(frozen=True)
class SubOrderView:
    id: str
    shop_id: str
    status: str
    gross_cents: int
    discount_cents: int
    amount_cents: int
    lines: list[LineView]
    warehouse_id: str | None = None
    delivery_status: str = "not_shipped"
    carrier: str | None = None
    tracking_no: str | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    received_at: datetime | None = None


@dataclass(frozen=True)
class PaymentView:
    id: str
    status: str
    amount_cents: int
    reference: str | None
    reason: str | None
    started_at: datetime
    finished_at: datetime | None
    stage: str | None = None


@dataclass(frozen=True)
class PresaleView:
    """A presale order's two stages and the balance window."""

    stage: str  # the stage due next: "deposit" | "balance"
    deposit_cents: int
    balance_cents: int
    balance_starts_at: datetime
    balance_ends_at: datetime
    deposit_refundable: bool
    deposit_outcome: str | None = None  # "forfeited" | "refunded" once the order lapsed or was cancelled

    @classmethod
    def of(cls, terms: dict[str, Any]) -> PresaleView:
        return cls(stage=terms["stage"], deposit_cents=int(terms["deposit_cents"]),
                   balance_cents=int(terms["balance_cents"]),
                   balance_starts_at=datetime.fromisoformat(terms["balance_starts_at"]),
                   balance_ends_at=datetime.fromisoformat(terms["balance_ends_at"]),
                   deposit_refundable=bool(terms.get("deposit_refundable")),
                   deposit_outcome=terms.get("deposit_outcome"))


@dataclass(frozen=True)
class RefundLineView:
    sub_order_id: str
    shop_id: str
    sku: str
    qty: int
    amount_cents: int


@dataclass(frozen=True)
class RefundView:
    id: str
    order_id: str
    status: str
    amount_cents: int
    lines: list[RefundLineView]
    created_at: datetime
    completed_at: datetime | None
    last_error: str | None
    kind: str = "refund_only"
    reason: str | None = None
    decided_at: datetime | None = None
    goods_received_at: datetime | None = None

    @classmethod
    def of(cls, refund: Refund) -> RefundView:
        return cls(
            id=refund.id, order_id=refund.order_id, status=refund.status, amount_cents=refund.amount_cents,
            lines=[RefundLineView(**asdict(rl)) for rl in refund.lines], created_at=refund.created_at,
            completed_at=refund.completed_at, last_error=refund.last_error, kind=refund.kind,
            reason=refund.reason, decided_at=refund.decided_at, goods_received_at=refund.goods_received_at,
        )


@dataclass(frozen=True)
class OrderView:
    id: str
    buyer_id: str
    status: str
    tx_type: str
    channel: str
    idempotency_key: str
    created_at: datetime
    expires_at: datetime | None
    gross_cents: int
    discount_cents: int
    amount_cents: int
    address: dict[str, str]
    sub_orders: list[SubOrderView]
    payments: list[PaymentView]
    refunds: list[RefundView]
    replayed: bool = False  # True when an idempotency key returned an existing order
    address_normalized: dict[str, Any] | None = None  # canonical names and codes (the address library)
    presale: PresaleView | None = None
    cash_on_delivery: bool = False
    auction_id: str | None = None

    @classmethod
    def of(cls, order: Order, *, replayed: bool = False) -> OrderView:
        return cls(
            id=order.id, buyer_id=order.buyer_id, status=order.status, tx_type=order.tx_type,
            channel=order.channel, idempotency_key=order.idempotency_key, created_at=order.created_at,
            expires_at=order.expires_at, gross_cents=order.gross_cents, discount_cents=order.discount_cents,
            amount_cents=order.amount_cents, address=order.address.typed(),
            address_normalized=order.address.region.as_dict() if order.address.region else None,
            sub_orders=[
                SubOrderView(
                    id=s.id, shop_id=s.shop_id, status=s.status, gross_cents=s.gross_cents,
                    discount_cents=s.discount_cents, amount_cents=s.amount_cents,
                    lines=[LineView(
                        sku=li.sku, name=li.name, qty=li.qty, list_price_cents=li.list_price_cents,
                        unit_price_cents=li.unit_price_cents, discount_cents=li.discount_cents,
                        amount_cents=li.amount_cents, refunded_qty=li.refunded_qty,
                        refund_requested_qty=li.refund_requested_qty,
                    ) for li in s.lines],
                    warehouse_id=s.warehouse_id, delivery_status=s.delivery_status, carrier=s.carrier,
                    tracking_no=s.tracking_no, shipped_at=s.shipped_at, delivered_at=s.delivered_at,
                    received_at=s.received_at,
                )
                for s in order.sub_orders
            ],
            payments=[PaymentView(id=p.id, status=p.status, amount_cents=p.amount_cents,
                                  reference=p.reference, reason=p.reason, started_at=p.started_at,
                                  finished_at=p.finished_at, stage=p.stage)
                      for p in order.payments],
            refunds=[RefundView.of(r) for r in order.refunds],
            replayed=replayed,
            presale=PresaleView.of(order.presale) if order.presale else None,
            cash_on_delivery=order.is_cod,
            auction_id=(order.terms.get("auction") or {}).get("auction_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShopView:
    id: str
    name: str
    products: int


@dataclass(frozen=True)
class FlashView:
    promotion_id: str
    price_cents: int
    available: int
    per_buyer_limit: int
    ends_at: datetime | None


@dataclass(frozen=True)
class ProductView:
    sku: str
    shop_id: str
    name: str
    price_cents: int
    available: int
    limit_per_buyer: int | None
    limit_period: str | None
    promotions: list[str]  # human-readable, e.g. "10% off", "save 5.00 off 50.00 at this shop"
    flash: FlashView | None
    tx_types: tuple[str, ...] = ("fixed_price",)  # the transaction types it can be bought with
    warehouses: dict[str, int] | None = None  # warehouse id -> available units (warehouse-stocked SKUs)

    @classmethod
    def of(cls, p: Product, stock: dict[tuple[str, str], StockLevel], promos: list[Promotion],
           tx_types: tuple[str, ...] | None = None) -> ProductView:
        regular = stock.get((p.sku, DEFAULT_POOL))
        in_warehouses = {warehouse_of(pool): max(lv.available, 0) for (sku, pool), lv in sorted(stock.items())
                         if sku == p.sku and warehouse_of(pool) is not None}
        flash_level = stock.get((p.sku, FLASH_POOL))
        flash = next((x for x in promos if x.kind == "flash_price" and x.sku == p.sku), None)
        labels = []
        for x in promos:
            if x.kind == "percent_off" and x.sku == p.sku:
                labels.append(f"{x.percent}% off")
            elif x.kind == "amount_off" and x.sku == p.sku:
                labels.append(f"{x.amount_cents / 100:.2f} off each")
            elif x.kind == "spend_save" and x.shop_id == p.shop_id:
                labels.append(f"save {x.amount_cents / 100:.2f} when the shop total reaches "
                              f"{x.threshold_cents / 100:.2f}")
        return cls(
            sku=p.sku, shop_id=p.shop_id, name=p.name, price_cents=p.price_cents,
            available=(max(regular.available, 0) if regular else 0) + sum(in_warehouses.values()),
            limit_per_buyer=p.limit.max_qty if p.limit else None,
            limit_period=p.limit.period if p.limit else None, promotions=labels,
            flash=FlashView(promotion_id=flash.id, price_cents=flash.price_cents,
                            available=max(flash_level.available, 0) if flash_level else 0,
                            per_buyer_limit=flash.per_buyer_limit, ends_at=flash.ends_at) if flash else None,
            tx_types=tx_types if tx_types is not None else (("fixed_price", "flash_sale") if flash
                                                            else ("fixed_price",)),
            warehouses={str(k): v for k, v in in_warehouses.items()} or None,
        )


def shop_view(shop: Shop, products: int) -> ShopView:
    return ShopView(id=shop.id, name=shop.name, products=products)


@dataclass(frozen=True)
class BidView:
    id: str
    auction_id: str
    buyer_id: str
    amount_cents: int
    placed_at: datetime

    @classmethod
    def of(cls, b: Bid) -> BidView:
        return cls(id=b.id, auction_id=b.auction_id, buyer_id=b.buyer_id, amount_cents=b.amount_cents,
                   placed_at=b.placed_at)


@dataclass(frozen=True)
class AuctionView:
    id: str
    shop_id: str
    sku: str
    status: str  # open | awarded | sold | unsold
    phase: str  # scheduled | running | ended (while open), else the status
    start_price_cents: int
    increment_cents: int
    reserve_cents: int
    reserve_met: bool
    starts_at: datetime
    ends_at: datetime
    current_cents: int
    leader_buyer_id: str | None
    next_min_cents: int
    bid_count: int
    order_id: str | None
    offered: list[str]
    bids: list[BidView]  # the highest first (at most 20)

    @classmethod
    def of(cls, a: Auction, now: datetime, bids: list[Bid]) -> AuctionView:
        return cls(id=a.id, shop_id=a.shop_id, sku=a.sku, status=a.status, phase=a.phase(now),
                   start_price_cents=a.start_price_cents, increment_cents=a.increment_cents,
                   reserve_cents=a.reserve_cents,
                   reserve_met=a.bids > 0 and a.current_cents >= a.reserve_cents,
                   starts_at=a.starts_at, ends_at=a.ends_at, current_cents=a.current_cents,
                   leader_buyer_id=a.leader_buyer_id, next_min_cents=a.next_min_cents, bid_count=a.bids,
                   order_id=a.order_id, offered=list(a.offered), bids=[BidView.of(b) for b in bids[:20]])
