"""Tables of the trading DB (SQLAlchemy Core). Money in integer cents; times aware UTC."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import false
from sqlalchemy.sql.functions import FunctionElement

from common.sql import UTCDateTime as _AwareUTC


class UTCDateTime(_AwareUTC):
    """The trading DB's aware-UTC column: a naive datetime reaching it is a bug, refused."""

    cache_ok = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, strict=True, **kwargs)


class CurrentTxid(FunctionElement):  # type: ignore[type-arg]
    """Server default of ``domain_events.txid``: the writing transaction's id on PostgreSQL, else 0."""

    type = BigInteger()
    inherit_cache = True
    name = "current_txid"


@compiles(CurrentTxid)
def _txid_default(element: CurrentTxid, compiler, **kw) -> str:
    return "0"


@compiles(CurrentTxid, "postgresql")
def _txid_default_pg(element: CurrentTxid, compiler, **kw) -> str:
    return "(pg_current_xact_id()::text::bigint)"


metadata = MetaData()

shops = Table(
    "shops", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("auto_receive_days", Integer, nullable=False, default=7, server_default="7"),
    Column("refund_window_days", Integer, nullable=False, default=15, server_default="15"),
    Column("cod_max_order_cents", BigInteger, nullable=False, default=0, server_default="0"),
    Column("cod_max_qty_per_day", Integer, nullable=False, default=0, server_default="0"),
    Column("presale_deposit_refundable", Boolean, nullable=False, default=False, server_default=false()),
)

# Stock of a SKU in a warehouse is the inventory pool "wh:<warehouse id>".
warehouses = Table(
    "warehouses", metadata,
    Column("id", String(13), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("province_code", String(8), nullable=False),
    Column("city_code", String(16)),
)

products = Table(
    "products", metadata,
    Column("sku", String(64), primary_key=True),
    Column("shop_id", String(64), ForeignKey("shops.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("limit_max_qty", Integer),
    Column("limit_period", String(16)),
)

promotions = Table(
    "promotions", metadata,
    Column("id", String(64), primary_key=True),
    Column("shop_id", String(64), ForeignKey("shops.id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("sku", String(64)),
    Column("percent", Integer, nullable=False, default=0),
    Column("amount_cents", BigInteger, nullable=False, default=0),
    Column("threshold_cents", BigInteger, nullable=False, default=0),
    Column("price_cents", BigInteger, nullable=False, default=0),
    Column("stock", Integer, nullable=False, default=0),
    Column("per_buyer_limit", Integer, nullable=False, default=0),
    Column("starts_at", UTCDateTime),
    Column("ends_at", UTCDateTime),
    Column("balance_starts_at", UTCDateTime),
    Column("balance_ends_at", UTCDateTime),
)

inventory = Table(
    "inventory", metadata,
    Column("sku", String(64), primary_key=True),
    Column("pool", String(16), primary_key=True),
    Column("on_hand", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, default=0),
    # belt and braces: the conditional UPDATEs already keep these true
    CheckConstraint("reserved >= 0", name="ck_inventory_reserved_nonneg"),
    CheckConstraint("on_hand >= reserved", name="ck_inventory_not_oversold"),
)

purchase_counters = Table(
    "purchase_counters", metadata,
    Column("buyer_id", String(64), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("period_key", String(64), primary_key=True),
    Column("used", Integer, nullable=False, default=0),
    CheckConstraint("used >= 0", name="ck_purchase_counters_nonneg"),
)

orders = Table(
    "orders", metadata,
    Column("id", String(40), primary_key=True),
    Column("buyer_id", String(64), nullable=False),
    Column("tx_type", String(32), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("version", Integer, nullable=False, default=0),
    Column("amount_cents", BigInteger, nullable=False),
    Column("addr_country", String(200), nullable=False),
    Column("addr_province", String(200), nullable=False),
    Column("addr_city", String(200), nullable=False),
    Column("addr_district", String(200), nullable=False),
    Column("addr_street", String(200), nullable=False),
    Column("addr_recipient", String(200), nullable=False),
    Column("addr_phone", String(40), nullable=False),
    Column("addr_postal_code", String(20)),
    Column("addr_region", Text),  # canonical names and codes (JSON) from the address library
    Column("terms", Text),  # tx-type terms (JSON): presale stages and window, cash on delivery, auction
    UniqueConstraint("buyer_id", "idempotency_key", name="uq_orders_buyer_idempotency_key"),
    Index("ix_orders_status_expires", "status", "expires_at"),
)

sub_orders = Table(
    "sub_orders", metadata,
    Column("id", String(40), primary_key=True),
    Column("order_id", String(40), ForeignKey("orders.id"), nullable=False, index=True),
    Column("shop_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("position", Integer, nullable=False),
    Column("warehouse_id", String(13)),
    Column("delivery_status", String(16), nullable=False, default="not_shipped",
           server_default="not_shipped"),
    Column("carrier", String(64)),
    Column("tracking_no", String(64)),
    Column("shipped_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("received_at", UTCDateTime),
    Index("ix_sub_orders_delivery", "delivery_status", "delivered_at"),
)

order_lines = Table(
    "order_lines", metadata,
    Column("order_id", String(40), ForeignKey("orders.id"), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("sub_order_id", String(40), ForeignKey("sub_orders.id"), nullable=False),
    Column("shop_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("list_price_cents", BigInteger, nullable=False),
    Column("unit_price_cents", BigInteger, nullable=False),
    Column("discount_cents", BigInteger, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("pool", String(16), nullable=False),
    Column("limit_key", String(64)),
    Column("refund_requested_qty", Integer, nullable=False, default=0),
    Column("refunded_qty", Integer, nullable=False, default=0),
    Column("refunded_cents", BigInteger, nullable=False, default=0),
    Column("requested_cents", BigInteger, nullable=False, default=0),
    Column("position", Integer, nullable=False),
)

payments = Table(
    "payments", metadata,
    Column("id", String(40), primary_key=True),
    Column("order_id", String(40), ForeignKey("orders.id"), nullable=False, index=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("reference", String(128)),
    Column("reason", Text),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("stage", String(16)),  # presale: "deposit" | "balance"
    Index("ix_payments_status", "status"),  # the retry job looks up the (few) queued payments
)

refunds = Table(
    "refunds", metadata,
    Column("id", String(40), primary_key=True),
    Column("order_id", String(40), ForeignKey("orders.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("last_error", Text),
    Column("kind", String(16), nullable=False, default="refund_only", server_default="refund_only"),
    Column("reason", Text),
    Column("decided_at", UTCDateTime),
    Column("goods_received_at", UTCDateTime),
)

refund_lines = Table(
    "refund_lines", metadata,
    Column("refund_id", String(40), ForeignKey("refunds.id"), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("sub_order_id", String(40), nullable=False),
    Column("shop_id", String(64), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
)

# Auctions: a bid is accepted by ONE conditional UPDATE on next_min_cents (see SqlAuctions.try_bid).
auctions = Table(
    "auctions", metadata,
    Column("id", String(40), primary_key=True),
    Column("shop_id", String(64), ForeignKey("shops.id"), nullable=False),
    Column("sku", String(64), ForeignKey("products.sku"), nullable=False, index=True),
    Column("start_price_cents", BigInteger, nullable=False),
    Column("increment_cents", BigInteger, nullable=False),
    Column("reserve_cents", BigInteger, nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("current_cents", BigInteger, nullable=False, default=0),
    Column("leader_buyer_id", String(64)),
    Column("next_min_cents", BigInteger, nullable=False),
    Column("bids", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False, default=0),
    Column("order_id", String(40)),
    Column("offered", Text, nullable=False, default="[]"),  # JSON list of buyer ids offered it
    CheckConstraint("current_cents >= 0", name="ck_auctions_current_nonneg"),
    Index("ix_auctions_status_ends", "status", "ends_at"),
)

auction_bids = Table(
    "auction_bids", metadata,
    Column("id", String(40), primary_key=True),
    Column("auction_id", String(40), ForeignKey("auctions.id"), nullable=False, index=True),
    Column("buyer_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("placed_at", UTCDateTime, nullable=False),
    Column("address", Text),  # JSON, optional
)

# Every domain event, written in the same transaction as the change that recorded it (an
# append-only journal: the order, its stock and its events commit together or not at all).
# Live subscribers get events from the publisher after commit; this table is for replay/audit.
domain_events = Table(
    "domain_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("name", String(64), nullable=False),
    Column("order_id", String(40), index=True),
    Column("payload", Text, nullable=False),
    # the writing transaction's id (PostgreSQL; 0 on SQLite, whose single writer commits in id order):
    # the journal relay reads (txid, id) below the oldest in-flight transaction, so a row whose
    # transaction commits late is never skipped (see domain/adapters/journal.py)
    Column("txid", BigInteger, nullable=False, server_default=CurrentTxid()),
    Index("ix_domain_events_txid_id", "txid", "id"),
    Index("ix_domain_events_occurred_at", "occurred_at"),
)

# Per-product figures for the merchant pages: a read model kept by the journal relay (a `sku` tag
# would put up to 100,000 series per shop into the metric store). One row per shop, SKU and hour.
sku_sales_hourly = Table(
    "sku_sales_hourly", metadata,
    Column("shop_id", String(64), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("period", UTCDateTime, primary_key=True),  # the hour's start (UTC)
    Column("units", BigInteger, nullable=False, default=0),  # units of paid sub-orders
    Column("revenue_cents", BigInteger, nullable=False, default=0),
    Column("refunded_units", BigInteger, nullable=False, default=0),
    Column("refunded_cents", BigInteger, nullable=False, default=0),
    Index("ix_sku_sales_hourly_shop_period", "shop_id", "period"),
)

# Where each journal read model stands, committed with the model's rows (exactly once), and the
# fencing token of the relay that last wrote it (an older token is refused).
read_model_cursors = Table(
    "read_model_cursors", metadata,
    Column("name", String(64), primary_key=True),
    Column("txid", BigInteger, nullable=False, default=0),
    Column("event_id", BigInteger, nullable=False, default=0),
    Column("fence", BigInteger, nullable=False, default=0),
)
