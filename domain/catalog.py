"""Demo seed data: four shops, forty products, stock, promotions of every kind, flash sales.

No randomness; ``TradingService.seed(demo_catalog())`` is idempotent (rows are inserted only when
absent), so every node and ``tradeguard seed`` can run it safely.
Flash-sale SKUs (``FLASH_SKUS``) sell at the flash price under tx type
``flash_sale`` from their own limited pool, 1–2 per buyer.

Every transaction type is on show: ``PRESALE_SKU`` sells as ``presale`` (deposit now, the balance in a
window opening five minutes after the first seed, for 30 days); ``COD_SHOP`` accepts cash on delivery
(up to 500.00 per order, 10 units of a SKU per buyer per day); ``AUCTION_SKU`` is auctioned for
an hour. The presale window is the only thing that
depends on the time (``now``, default the current UTC minute); the first seed's values stay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.model import Catalog, Product, Promotion, PurchaseLimit, Shop, StockLevel, Warehouse
from domain.model.auction import Auction

SHOPS = [
    ("acme-electronics", "Acme Electronics"),
    ("river-books", "River Books"),
    ("green-grocer", "Green Grocer"),
    ("urban-apparel", "Urban Apparel"),
]

# sku, shop, name, price (cents), regular stock, per-buyer limit (max, period) or None
PRODUCTS: list[tuple[str, str, str, int, int, tuple[int, str] | None]] = [
    ("ELEC-001", "acme-electronics", "Wireless earbuds", 12900, 5000, None),
    ("ELEC-002", "acme-electronics", "Smartphone X12", 299900, 800, (2, "day")),
    ("ELEC-003", "acme-electronics", "USB-C charger 65W", 3900, 8000, None),
    ("ELEC-004", "acme-electronics", "Mechanical keyboard", 8900, 3000, None),
    ("ELEC-005", "acme-electronics", "4K monitor 27\"", 189900, 600, (1, "day")),
    ("ELEC-006", "acme-electronics", "Power bank 20000 mAh", 4900, 6000, None),
    ("ELEC-007", "acme-electronics", "Smartwatch S3", 59900, 1500, (3, "week")),
    ("ELEC-008", "acme-electronics", "Bluetooth speaker", 6900, 4000, None),
    ("ELEC-009", "acme-electronics", "Game console", 349900, 400, (1, "week")),
    ("ELEC-010", "acme-electronics", "HDMI cable 2 m", 900, 20000, None),
    ("BOOK-001", "river-books", "Architecture Patterns with Python", 4500, 5000, None),
    ("BOOK-002", "river-books", "Designing Data-Intensive Applications", 5900, 5000, None),
    ("BOOK-003", "river-books", "The Three-Body Problem", 2300, 8000, None),
    ("BOOK-004", "river-books", "Site Reliability Engineering", 4900, 4000, None),
    ("BOOK-005", "river-books", "Signed first edition", 19900, 50, (1, "lifetime")),
    ("BOOK-006", "river-books", "Children's picture book", 1500, 9000, None),
    ("BOOK-007", "river-books", "Cookbook: Sichuan", 3200, 3000, None),
    ("BOOK-008", "river-books", "Notebook A5 dotted", 800, 20000, (20, "day")),
    ("BOOK-009", "river-books", "Poetry anthology", 1800, 4000, None),
    ("BOOK-010", "river-books", "World atlas", 6500, 1200, None),
    ("FOOD-001", "green-grocer", "Organic eggs (12)", 890, 20000, (10, "day")),
    ("FOOD-002", "green-grocer", "Jasmine rice 5 kg", 4990, 6000, None),
    ("FOOD-003", "green-grocer", "Longjing green tea 250 g", 12800, 1500, (5, "month")),
    ("FOOD-004", "green-grocer", "Avocados (4)", 1590, 10000, None),
    ("FOOD-005", "green-grocer", "Olive oil 1 l", 2490, 5000, None),
    ("FOOD-006", "green-grocer", "Dark chocolate 85%", 690, 15000, None),
    ("FOOD-007", "green-grocer", "Mooncakes gift box", 16800, 900, (3, "day")),
    ("FOOD-008", "green-grocer", "Fresh milk 1 l", 590, 20000, (6, "day")),
    ("FOOD-009", "green-grocer", "Coffee beans 1 kg", 8900, 2500, None),
    ("FOOD-010", "green-grocer", "Mixed nuts 500 g", 3990, 5000, None),
    ("APRL-001", "urban-apparel", "Down jacket", 69900, 1200, None),
    ("APRL-002", "urban-apparel", "Running shoes", 45900, 2000, (2, "day")),
    ("APRL-003", "urban-apparel", "Cotton T-shirt", 7900, 10000, None),
    ("APRL-004", "urban-apparel", "Denim jeans", 25900, 4000, None),
    ("APRL-005", "urban-apparel", "Wool scarf", 12900, 3000, None),
    ("APRL-006", "urban-apparel", "Limited sneakers collab", 129900, 100, (1, "lifetime")),
    ("APRL-007", "urban-apparel", "Baseball cap", 5900, 6000, None),
    ("APRL-008", "urban-apparel", "Socks (5 pairs)", 3900, 15000, None),
    ("APRL-009", "urban-apparel", "Rain coat", 32900, 1500, None),
    ("APRL-010", "urban-apparel", "Leather belt", 15900, 2500, None),
]

# promotion id, shop, kind, fields
PROMOTIONS: list[Promotion] = [
    # percent off one SKU
    Promotion("pct-elec-001", "acme-electronics", "percent_off", sku="ELEC-001", percent=15),
    Promotion("pct-book-002", "river-books", "percent_off", sku="BOOK-002", percent=20),
    Promotion("pct-food-009", "green-grocer", "percent_off", sku="FOOD-009", percent=10),
    Promotion("pct-aprl-001", "urban-apparel", "percent_off", sku="APRL-001", percent=30),
    # amount off each unit
    Promotion("amt-elec-004", "acme-electronics", "amount_off", sku="ELEC-004", amount_cents=1000),
    Promotion("amt-book-004", "river-books", "amount_off", sku="BOOK-004", amount_cents=500),
    Promotion("amt-food-002", "green-grocer", "amount_off", sku="FOOD-002", amount_cents=800),
    Promotion("amt-aprl-004", "urban-apparel", "amount_off", sku="APRL-004", amount_cents=3000),
    # spend X save Y, per shop (the highest tier met wins)
    Promotion("ss-elec-500", "acme-electronics", "spend_save", threshold_cents=50000, amount_cents=3000),
    Promotion("ss-elec-2000", "acme-electronics", "spend_save", threshold_cents=200000, amount_cents=15000),
    Promotion("ss-book-100", "river-books", "spend_save", threshold_cents=10000, amount_cents=1000),
    Promotion("ss-food-99", "green-grocer", "spend_save", threshold_cents=9900, amount_cents=1000),
    Promotion("ss-food-199", "green-grocer", "spend_save", threshold_cents=19900, amount_cents=2500),
    Promotion("ss-aprl-300", "urban-apparel", "spend_save", threshold_cents=30000, amount_cents=5000),
    # flash sales: flash price, limited flash stock, strict per-buyer limit
    Promotion("flash-elec-002", "acme-electronics", "flash_price", sku="ELEC-002", price_cents=199900,
              stock=200, per_buyer_limit=1),
    Promotion("flash-elec-006", "acme-electronics", "flash_price", sku="ELEC-006", price_cents=1990,
              stock=500, per_buyer_limit=2),
    Promotion("flash-book-003", "river-books", "flash_price", sku="BOOK-003", price_cents=990,
              stock=300, per_buyer_limit=2),
    Promotion("flash-food-007", "green-grocer", "flash_price", sku="FOOD-007", price_cents=8800,
              stock=150, per_buyer_limit=1),
    Promotion("flash-aprl-002", "urban-apparel", "flash_price", sku="APRL-002", price_cents=19900,
              stock=250, per_buyer_limit=1),
    Promotion("flash-aprl-006", "urban-apparel", "flash_price", sku="APRL-006", price_cents=89900,
              stock=50, per_buyer_limit=1),
]

# Two warehouses; these SKUs are stocked in both (no shared pool): an order ships from the one nearest
# to the delivery province that has the units, then the larger stock. sku -> {warehouse id: units}.
WAREHOUSES = [
    Warehouse("hz-east", "Hangzhou East DC", "CN", "CN-ZJ", "330100"),
    Warehouse("sz-south", "Shenzhen South DC", "CN", "CN-GD", "440300"),
]
WAREHOUSE_STOCK: dict[str, dict[str, int]] = {
    "APRL-003": {"hz-east": 6000, "sz-south": 4000},
    "APRL-008": {"hz-east": 5000, "sz-south": 10000},
    "FOOD-004": {"hz-east": 4000, "sz-south": 6000},
}

FLASH_SKUS = tuple(p.sku for p in PROMOTIONS if p.kind == "flash_price" and p.sku)
PRESALE_SKU = "ELEC-009"
COD_SHOP = "green-grocer"
COD_SETTINGS = {"cod_max_order_cents": 50000, "cod_max_qty_per_day": 10}


def presale_promotion(now: datetime) -> Promotion:
    """The demo presale: the game console at 3,299.00 with a 500.00 deposit per unit, one per buyer."""
    opens = now.replace(second=0, microsecond=0) + timedelta(minutes=5)
    return Promotion("presale-elec-009", "acme-electronics", "presale", sku=PRESALE_SKU, price_cents=329900,
                     amount_cents=50000, per_buyer_limit=1, balance_starts_at=opens,
                     balance_ends_at=opens + timedelta(days=30))


AUCTION_SKU = "BOOK-005"


def demo_auction(now: datetime) -> Auction:
    """The demo auction: a signed first edition, from 150.00 in steps of 5.00, reserve 180.00, one hour
    from the first seed (closed by the node's auction job)."""
    start = now.replace(second=0, microsecond=0)
    return Auction(id="auc-book-005", shop_id="river-books", sku=AUCTION_SKU, start_price_cents=15000,
                   increment_cents=500, reserve_cents=18000, starts_at=start,
                   ends_at=start + timedelta(hours=1), created_at=start)


def demo_catalog(now: datetime | None = None) -> Catalog:
    products = [
        Product(sku=sku, shop_id=shop, name=name, price_cents=price,
                limit=PurchaseLimit(lim[0], lim[1]) if lim else None)
        for sku, shop, name, price, _stock, lim in PRODUCTS
    ]
    stock = [StockLevel(sku, "default", qty) for sku, _shop, _n, _p, qty, _l in PRODUCTS
             if sku not in WAREHOUSE_STOCK]
    stock += [StockLevel(sku, f"wh:{wid}", qty)
              for sku, per in WAREHOUSE_STOCK.items() for wid, qty in per.items()]
    stock += [StockLevel(p.sku, "flash", p.stock) for p in PROMOTIONS if p.kind == "flash_price" and p.sku]
    shops = [Shop(i, n, **(COD_SETTINGS if i == COD_SHOP else {})) for i, n in SHOPS]
    now = now or datetime.now(UTC)
    return Catalog(shops=shops, products=products, stock=stock,
                   promotions=[*PROMOTIONS, presale_promotion(now)], warehouses=list(WAREHOUSES),
                   auctions=[demo_auction(now)])
