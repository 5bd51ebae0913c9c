"""Catalog side of the model: shops, products (SKUs), stock levels, promotions, purchase limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from domain.errors import InvalidRequest

DEFAULT_POOL = "default"  # regular stock of a SKU
FLASH_POOL = "flash"  # stock allocated to the SKU's flash sale

PROMOTION_KINDS = ("percent_off", "amount_off", "spend_save", "flash_price", "presale")
SHOP_WIDE_PROMOTIONS = ("spend_save",)  # kinds that apply to a shop's whole sub-order (any other names a SKU)
LIMIT_PERIODS = ("day", "week", "month", "lifetime")


WAREHOUSE_POOL_PREFIX = "wh:"  # stock of a SKU in one warehouse is the pool "wh:<warehouse id>"


@dataclass(frozen=True)
class Shop:
    """A shop and its fulfilment and after-sale settings."""

    id: str
    name: str
    auto_receive_days: int = 7  # a delivered sub-order counts as received this many days later
    refund_window_days: int = 15  # refunds may be requested until this long after receipt (or payment)
    cod_max_order_cents: int = 0  # cash on delivery: the largest sub-order accepted; 0 = no COD
    cod_max_qty_per_day: int = 0  # cash on delivery: units of one SKU per buyer per day; 0 = no cap
    presale_deposit_refundable: bool = False  # pre-sale: deposit returned (True) or forfeited (False)

    @property
    def accepts_cod(self) -> bool:
        return self.cod_max_order_cents > 0

    def __post_init__(self) -> None:
        for name in ("auto_receive_days", "refund_window_days", "cod_max_order_cents", "cod_max_qty_per_day"):
            if getattr(self, name) < 0:
                raise InvalidRequest(f"shop {self.id}: {name} must be >= 0", field=name)


@dataclass(frozen=True)
class Warehouse:
    """Where stock is kept: its stock rows are the pool ``wh:<id>`` (id at most 13 characters)."""

    id: str
    name: str
    country_code: str
    province_code: str
    city_code: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,12}", self.id):
            raise InvalidRequest(f"warehouse id {self.id!r} must be 1-13 of a-z, 0-9, -", field="id")

    @property
    def pool(self) -> str:
        return warehouse_pool(self.id)


def warehouse_pool(warehouse_id: str) -> str:
    return WAREHOUSE_POOL_PREFIX + warehouse_id


def warehouse_of(pool: str) -> str | None:
    """The warehouse id of a stock pool, or None for the shared pools (``default``, ``flash``)."""
    return pool[len(WAREHOUSE_POOL_PREFIX):] if pool.startswith(WAREHOUSE_POOL_PREFIX) else None


@dataclass(frozen=True)
class PurchaseLimit:
    """At most ``max_qty`` units of one SKU per buyer per ``period``."""

    max_qty: int
    period: str = "day"

    def __post_init__(self) -> None:
        if self.max_qty < 1:
            raise InvalidRequest("purchase limit max_qty must be >= 1", field="max_qty")
        if self.period not in LIMIT_PERIODS:
            raise InvalidRequest(
                f"purchase limit period must be one of {', '.join(LIMIT_PERIODS)}", field="period"
            )

    def period_key(self, now: datetime) -> str:
        if self.period == "day":
            return f"d:{now:%Y-%m-%d}"
        if self.period == "week":
            y, w, _ = now.isocalendar()
            return f"w:{y}-W{w:02d}"
        if self.period == "month":
            return f"m:{now:%Y-%m}"
        return "all"


@dataclass(frozen=True)
class Product:
    sku: str
    shop_id: str
    name: str
    price_cents: int
    limit: PurchaseLimit | None = None

    def __post_init__(self) -> None:
        if self.price_cents < 0:
            raise InvalidRequest(f"price of {self.sku} must be >= 0 cents", field="price_cents")


@dataclass(frozen=True)
class StockLevel:
    """Inventory of one SKU in one pool: ``on_hand`` in the warehouse, ``reserved`` for unpaid orders."""

    sku: str
    pool: str
    on_hand: int
    reserved: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True)
class Promotion:
    """One promotion. ``kind`` decides which fields matter:

    - ``percent_off``: ``sku``, ``percent`` (1..100) off the unit price;
    - ``amount_off``: ``sku``, ``amount_cents`` off each unit (never below 0);
    - ``spend_save``: shop-wide, save ``amount_cents`` when the shop's sub-order
      reaches ``threshold_cents`` (highest tier met wins);
    - ``flash_price``: ``sku`` sells at ``price_cents`` under tx type ``flash_sale``,
      from a limited pool of ``stock`` units, at most ``per_buyer_limit`` per buyer.
    - ``presale``: ``sku`` sells at ``price_cents`` under tx type ``presale``: a deposit of
      ``amount_cents`` per unit while the promotion is active (``starts_at``..``ends_at``), the
      balance from ``balance_starts_at`` until ``balance_ends_at``; ``per_buyer_limit`` (0 = none).
    """

    id: str
    shop_id: str
    kind: str
    sku: str | None = None
    percent: int = 0
    amount_cents: int = 0
    threshold_cents: int = 0
    price_cents: int = 0
    stock: int = 0
    per_buyer_limit: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    balance_starts_at: datetime | None = None  # presale: the balance window
    balance_ends_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROMOTION_KINDS:
            raise InvalidRequest(
                f"promotion {self.id}: kind must be one of {', '.join(PROMOTION_KINDS)}", field="kind"
            )
        if self.kind != "spend_save" and not self.sku:
            raise InvalidRequest(f"promotion {self.id} ({self.kind}) needs a sku", field="sku")
        if self.kind == "percent_off" and not 1 <= self.percent <= 100:
            raise InvalidRequest(f"promotion {self.id}: percent must be 1..100", field="percent")
        if self.kind in ("amount_off", "spend_save") and self.amount_cents <= 0:
            raise InvalidRequest(f"promotion {self.id}: amount_cents must be > 0", field="amount_cents")
        if self.kind == "flash_price" and (self.stock < 0 or self.per_buyer_limit < 1):
            raise InvalidRequest(
                f"promotion {self.id}: flash_price needs stock >= 0 and per_buyer_limit >= 1",
                field="per_buyer_limit",
            )
        if self.kind == "presale":
            if not 0 < self.amount_cents < self.price_cents:
                raise InvalidRequest(f"promotion {self.id}: presale deposit amount_cents must be > 0 and "
                                     "below price_cents", field="amount_cents")
            if self.balance_starts_at is None or self.balance_ends_at is None \
                    or self.balance_ends_at <= self.balance_starts_at:
                raise InvalidRequest(
                    f"promotion {self.id}: presale needs balance_starts_at < balance_ends_at",
                    field="balance_ends_at")

    def active(self, now: datetime) -> bool:
        if self.starts_at is not None and now < self.starts_at:
            return False
        return not (self.ends_at is not None and now >= self.ends_at)


@dataclass
class Catalog:
    """Seed data: what ``TradingService.seed`` writes (idempotently)."""

    shops: list[Shop] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    stock: list[StockLevel] = field(default_factory=list)
    promotions: list[Promotion] = field(default_factory=list)
    warehouses: list[Warehouse] = field(default_factory=list)
    auctions: list = field(default_factory=list)  # domain.model.auction.Auction
