"""SQL implementations of the storage ports (``domain.storage``) on one SQLAlchemy Connection."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from domain.adapters import orm
from domain.errors import ConcurrentUpdate
from domain.model import (
    Address,
    Order,
    OrderLine,
    Payment,
    Product,
    Promotion,
    PurchaseLimit,
    Refund,
    RefundLine,
    Region,
    Shop,
    StockLevel,
    SubOrder,
    Warehouse,
)

_ADDR = ("country", "province", "city", "district", "street", "recipient", "phone")
_LINE_MUTABLE = ("refund_requested_qty", "refunded_qty", "refunded_cents", "requested_cents")
_SUB_MUTABLE = ("status", "delivery_status", "carrier", "tracking_no", "shipped_at", "delivered_at",
                "received_at")
_REFUND_MUTABLE = ("status", "completed_at", "last_error", "reason", "decided_at", "goods_received_at")


def _region_json(address: Address) -> str | None:
    return json.dumps(asdict(address.region), sort_keys=True) if address.region else None


def _terms_json(order: Order) -> str | None:
    return json.dumps(order.terms, sort_keys=True) if order.terms else None


def _region_of(raw: str | None) -> Region | None:
    return Region(**json.loads(raw)) if raw else None


def insert_if_absent(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING (any dialect); True if a row was inserted."""
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        pk = list(table.primary_key.columns)
        stmt = dialect_insert(table).values(**values).on_conflict_do_nothing().returning(*pk)
        return conn.execute(stmt).first() is not None  # rowcount is unreliable here (psycopg: -1)
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
        return True
    except IntegrityError:
        return False


class _Snapshot(NamedTuple):
    subs: dict[str, tuple[Any, ...]]
    lines: dict[str, tuple[int, ...]]
    payments: dict[str, tuple[Any, ...]]
    refunds: dict[str, tuple[Any, ...]]


def _snapshot(order: Order) -> _Snapshot:
    return _Snapshot(
        subs={s.id: tuple(getattr(s, k) for k in _SUB_MUTABLE) for s in order.sub_orders},
        lines={li.sku: tuple(getattr(li, k) for k in _LINE_MUTABLE) for li in order.lines},
        payments={p.id: (p.status, p.started_at, p.finished_at, p.reference, p.reason, p.latency_ms)
                  for p in order.payments},
        refunds={r.id: tuple(getattr(r, k) for k in _REFUND_MUTABLE) for r in order.refunds},
    )


class SqlOrderRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.seen: list[Order] = []
        self._snapshots: dict[str, _Snapshot] = {}  # order id -> persisted state, to write only changes

    # ---------------------------------------------------------------- writing
    def add(self, order: Order) -> None:
        c = self.conn
        c.execute(insert(orm.orders).values(**self._order_row(order), version=order.version))
        c.execute(insert(orm.sub_orders), [
            {"id": s.id, "order_id": order.id, "shop_id": s.shop_id, "position": i,
             "warehouse_id": s.warehouse_id,
             **{k: getattr(s, k) for k in _SUB_MUTABLE}}
            for i, s in enumerate(order.sub_orders)
        ])
        c.execute(insert(orm.order_lines), [
            self._line_row(order.id, s.id, li, pos)
            for pos, (s, li) in enumerate((s, li) for s in order.sub_orders for li in s.lines)
        ])
        self._insert_payments(order, order.payments)
        self._insert_refunds(order, order.refunds)
        self._snapshots[order.id] = _snapshot(order)
        self.seen.append(order)

    def save(self, order: Order) -> None:
        """Version-checked UPDATE of the order row, then only the parts that changed since loading."""
        c = self.conn
        result = c.execute(
            update(orm.orders)
            .where(and_(orm.orders.c.id == order.id, orm.orders.c.version == order.version))
            .values(status=order.status, amount_cents=order.amount_cents, version=order.version + 1,
                    expires_at=order.expires_at, terms=_terms_json(order))
        )
        if result.rowcount != 1:
            raise ConcurrentUpdate(f"order {order.id} was changed by someone else; retry")
        order.version += 1
        before = self._snapshots.get(order.id) or _Snapshot({}, {}, {}, {})
        after = _snapshot(order)
        for sub_id, values in after.subs.items():
            if before.subs.get(sub_id) != values:
                c.execute(update(orm.sub_orders).where(orm.sub_orders.c.id == sub_id)
                          .values(**dict(zip(_SUB_MUTABLE, values, strict=True))))
        for sku, values in after.lines.items():
            if before.lines.get(sku) != values:
                c.execute(
                    update(orm.order_lines)
                    .where(and_(orm.order_lines.c.order_id == order.id, orm.order_lines.c.sku == sku))
                    .values(**dict(zip(_LINE_MUTABLE, values, strict=True)))
                )
        for p in order.payments:
            if p.id in before.payments and before.payments[p.id] != after.payments[p.id]:
                # conditional on the status we loaded: a payment changes hands once (e.g. two nodes
                # claiming the same queued payment for a retry: only one UPDATE matches)
                pay = orm.payments.c
                changed = c.execute(update(orm.payments).where(and_(
                    pay.id == p.id, pay.status == before.payments[p.id][0])).values(
                    status=p.status, started_at=p.started_at, finished_at=p.finished_at,
                    reference=p.reference, reason=p.reason, latency_ms=p.latency_ms))
                if changed.rowcount != 1:
                    raise ConcurrentUpdate(f"payment {p.id} of order {order.id} was changed by someone "
                                           "else; retry")
        self._insert_payments(order, [p for p in order.payments if p.id not in before.payments])
        for r in order.refunds:
            if r.id in before.refunds and before.refunds[r.id] != after.refunds[r.id]:
                c.execute(update(orm.refunds).where(orm.refunds.c.id == r.id).values(
                    **dict(zip(_REFUND_MUTABLE, after.refunds[r.id], strict=True))))
        self._insert_refunds(order, [r for r in order.refunds if r.id not in before.refunds])
        self._snapshots[order.id] = after
        if order not in self.seen:
            self.seen.append(order)

    def _insert_payments(self, order: Order, items: list[Payment]) -> None:
        if items:
            self.conn.execute(insert(orm.payments), [
                {"id": p.id, "order_id": order.id, "amount_cents": p.amount_cents, "status": p.status,
                 "started_at": p.started_at, "finished_at": p.finished_at, "reference": p.reference,
                 "reason": p.reason, "latency_ms": p.latency_ms, "stage": p.stage} for p in items
            ])

    def _insert_refunds(self, order: Order, items: list[Refund]) -> None:
        if not items:
            return
        self.conn.execute(insert(orm.refunds), [
            {"id": r.id, "order_id": order.id, "created_at": r.created_at, "kind": r.kind,
             **{k: getattr(r, k) for k in _REFUND_MUTABLE}} for r in items
        ])
        self.conn.execute(insert(orm.refund_lines), [
            {"refund_id": r.id, "sku": rl.sku, "sub_order_id": rl.sub_order_id, "shop_id": rl.shop_id,
             "qty": rl.qty, "amount_cents": rl.amount_cents} for r in items for rl in r.lines
        ])

    @staticmethod
    def _order_row(order: Order) -> dict[str, Any]:
        row = {
            "id": order.id, "buyer_id": order.buyer_id, "tx_type": order.tx_type, "channel": order.channel,
            "status": order.status, "idempotency_key": order.idempotency_key,
            "request_hash": order.request_hash, "created_at": order.created_at,
            "expires_at": order.expires_at, "amount_cents": order.amount_cents,
        }
        row.update({f"addr_{k}": getattr(order.address, k) for k in _ADDR})
        row.update(addr_postal_code=order.address.postal_code, addr_region=_region_json(order.address),
                   terms=_terms_json(order))
        return row

    @staticmethod
    def _line_row(order_id: str, sub_id: str, li: OrderLine, pos: int) -> dict[str, Any]:
        return {
            "order_id": order_id, "sku": li.sku, "sub_order_id": sub_id, "shop_id": li.shop_id,
            "name": li.name, "qty": li.qty, "list_price_cents": li.list_price_cents,
            "unit_price_cents": li.unit_price_cents, "discount_cents": li.discount_cents,
            "amount_cents": li.amount_cents, "pool": li.pool, "limit_key": li.limit_key, "position": pos,
            **{k: getattr(li, k) for k in _LINE_MUTABLE},
        }

    # ---------------------------------------------------------------- reading
    def get(self, order_id: str) -> Order | None:
        row = self.conn.execute(select(orm.orders).where(orm.orders.c.id == order_id)).mappings().first()
        return self._load(row) if row else None

    def get_by_idempotency_key(self, buyer_id: str, key: str) -> Order | None:
        row = self.conn.execute(select(orm.orders).where(and_(
            orm.orders.c.buyer_id == buyer_id, orm.orders.c.idempotency_key == key))).mappings().first()
        return self._load(row) if row else None

    def _load(self, row: Any) -> Order:
        c, oid = self.conn, row["id"]
        lines: dict[str, list[OrderLine]] = {}
        for r in c.execute(select(orm.order_lines).where(orm.order_lines.c.order_id == oid)
                           .order_by(orm.order_lines.c.position)).mappings():
            lines.setdefault(r["sub_order_id"], []).append(OrderLine(
                sku=r["sku"], shop_id=r["shop_id"], name=r["name"], qty=r["qty"],
                list_price_cents=r["list_price_cents"], unit_price_cents=r["unit_price_cents"],
                discount_cents=r["discount_cents"], amount_cents=r["amount_cents"], pool=r["pool"],
                limit_key=r["limit_key"], **{k: r[k] for k in _LINE_MUTABLE},
            ))
        subs = [SubOrder(id=r["id"], shop_id=r["shop_id"], lines=lines.get(r["id"], []),
                         warehouse_id=r["warehouse_id"], **{k: r[k] for k in _SUB_MUTABLE})
                for r in c.execute(select(orm.sub_orders).where(orm.sub_orders.c.order_id == oid)
                                   .order_by(orm.sub_orders.c.position)).mappings()]
        pays = [Payment(id=r["id"], amount_cents=r["amount_cents"], status=r["status"],
                        started_at=r["started_at"], finished_at=r["finished_at"], reference=r["reference"],
                        reason=r["reason"], latency_ms=r["latency_ms"], stage=r["stage"])
                for r in c.execute(select(orm.payments).where(orm.payments.c.order_id == oid)
                                   .order_by(orm.payments.c.started_at, orm.payments.c.id)).mappings()]
        refunds = [Refund(id=r["id"], order_id=oid, created_at=r["created_at"], kind=r["kind"],
                          **{k: r[k] for k in _REFUND_MUTABLE})
                   for r in c.execute(select(orm.refunds).where(orm.refunds.c.order_id == oid)
                                      .order_by(orm.refunds.c.created_at, orm.refunds.c.id)).mappings()]
        if refunds:
            by_id = {r.id: r for r in refunds}
            for r in c.execute(select(orm.refund_lines).where(orm.refund_lines.c.refund_id.in_(list(by_id)))
                               .order_by(orm.refund_lines.c.sku)).mappings():
                by_id[r["refund_id"]].lines.append(RefundLine(
                    sub_order_id=r["sub_order_id"], shop_id=r["shop_id"], sku=r["sku"], qty=r["qty"],
                    amount_cents=r["amount_cents"]))
        order = Order(
            id=oid, buyer_id=row["buyer_id"], tx_type=row["tx_type"], channel=row["channel"],
            address=Address(**{k: row[f"addr_{k}"] for k in _ADDR}, postal_code=row["addr_postal_code"],
                            region=_region_of(row["addr_region"])),
            idempotency_key=row["idempotency_key"],
            request_hash=row["request_hash"], created_at=row["created_at"], expires_at=row["expires_at"],
            status=row["status"], sub_orders=subs, payments=pays, refunds=refunds, version=row["version"],
            terms=json.loads(row["terms"]) if row["terms"] else {},
        )
        self._snapshots[oid] = _snapshot(order)
        self.seen.append(order)
        return order

    def head(self, order_id: str) -> tuple[str, str] | None:
        o, so = orm.orders.c, orm.sub_orders.c
        row = self.conn.execute(
            select(o.buyer_id, so.shop_id).join_from(orm.orders, orm.sub_orders, so.order_id == o.id)
            .where(o.id == order_id).order_by(so.position).limit(1)).first()
        return (row[0], row[1]) if row else None

    def expired_ids(self, now: datetime, limit: int, queued_grace: timedelta = timedelta(0)) -> list[str]:
        o, p = orm.orders.c, orm.payments.c
        due = and_(o.status == "pending_payment", o.expires_at <= now)
        if queued_grace > timedelta(0):
            queued = select(p.id).where(and_(p.order_id == o.id, p.status == "queued")).exists()
            due = and_(due, or_(o.expires_at <= now - queued_grace, ~queued))
        return list(self.conn.execute(select(o.id).where(due).order_by(o.expires_at).limit(limit)).scalars())

    def lapsed_presale_ids(self, now: datetime, limit: int) -> list[str]:
        o = orm.orders.c
        due = and_(o.status == "deposit_paid", o.expires_at <= now)
        return list(self.conn.execute(select(o.id).where(due).order_by(o.expires_at).limit(limit)).scalars())

    def queued_payments(self, limit: int) -> list[tuple[str, str]]:
        p = orm.payments.c
        rows = self.conn.execute(select(p.order_id, p.id).where(p.status == "queued")
                                 .order_by(p.started_at, p.id).limit(limit))
        return [(r[0], r[1]) for r in rows]

    def order_id_for_refund(self, refund_id: str) -> str | None:
        return self.conn.execute(select(orm.refunds.c.order_id)
                                 .where(orm.refunds.c.id == refund_id)).scalar_one_or_none()

    def order_id_for_sub_order(self, sub_order_id: str) -> str | None:
        return self.conn.execute(select(orm.sub_orders.c.order_id)
                                 .where(orm.sub_orders.c.id == sub_order_id)).scalar_one_or_none()

    def delivered_sub_orders(self, limit: int) -> list[tuple[str, str, str, datetime]]:
        so = orm.sub_orders.c
        rows = self.conn.execute(select(so.order_id, so.id, so.shop_id, so.delivered_at)
                                 .where(so.delivery_status == "delivered")
                                 .order_by(so.delivered_at, so.id).limit(limit))
        return [(r[0], r[1], r[2], r[3]) for r in rows]


class SqlCatalog:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @staticmethod
    def _shop(r: Any) -> Shop:
        return Shop(**{f.name: r._mapping[f.name] for f in fields(Shop)})

    def shops(self) -> list[Shop]:
        return [self._shop(r) for r in self.conn.execute(select(orm.shops).order_by(orm.shops.c.id))]

    def shop(self, shop_id: str) -> Shop | None:
        r = self.conn.execute(select(orm.shops).where(orm.shops.c.id == shop_id)).first()
        return self._shop(r) if r else None

    def warehouses(self) -> list[Warehouse]:
        return [Warehouse(**dict(r)) for r in self.conn.execute(
            select(orm.warehouses).order_by(orm.warehouses.c.id)).mappings()]

    def add_warehouse(self, warehouse: Warehouse) -> bool:
        return insert_if_absent(self.conn, orm.warehouses, asdict(warehouse))

    @staticmethod
    def _product(r: Any) -> Product:
        limit = PurchaseLimit(r.limit_max_qty, r.limit_period) if r.limit_max_qty else None
        return Product(sku=r.sku, shop_id=r.shop_id, name=r.name, price_cents=r.price_cents, limit=limit)

    def products(self, shop_id: str) -> list[Product]:
        p = orm.products.c
        return [self._product(r) for r in self.conn.execute(
            select(orm.products).where(p.shop_id == shop_id).order_by(p.sku))]

    def products_by_sku(self, skus: Iterable[str]) -> dict[str, Product]:
        skus = list(skus)
        if not skus:
            return {}
        rows = self.conn.execute(select(orm.products).where(orm.products.c.sku.in_(skus)))
        return {r.sku: self._product(r) for r in rows}

    def promotions(self, shop_ids: Iterable[str]) -> list[Promotion]:
        ids = list(shop_ids)
        if not ids:
            return []
        rows = self.conn.execute(select(orm.promotions).where(orm.promotions.c.shop_id.in_(ids))
                                 .order_by(orm.promotions.c.id)).mappings()
        return [Promotion(**dict(r)) for r in rows]

    def stock(self, skus: Iterable[str]) -> dict[tuple[str, str], StockLevel]:
        skus = list(skus)
        if not skus:
            return {}
        rows = self.conn.execute(select(orm.inventory).where(orm.inventory.c.sku.in_(skus)))
        return {(r.sku, r.pool): StockLevel(r.sku, r.pool, r.on_hand, r.reserved) for r in rows}

    def add_shop(self, shop: Shop) -> bool:
        return insert_if_absent(self.conn, orm.shops, asdict(shop))

    def add_product(self, product: Product) -> bool:
        lim = product.limit
        return insert_if_absent(self.conn, orm.products, {
            "sku": product.sku, "shop_id": product.shop_id, "name": product.name,
            "price_cents": product.price_cents, "limit_max_qty": lim.max_qty if lim else None,
            "limit_period": lim.period if lim else None})

    def add_promotion(self, promotion: Promotion) -> bool:
        return insert_if_absent(self.conn, orm.promotions, asdict(promotion))

    def add_stock(self, level: StockLevel) -> bool:
        return insert_if_absent(self.conn, orm.inventory, {
            "sku": level.sku, "pool": level.pool, "on_hand": level.on_hand, "reserved": level.reserved})


class SqlInventory:
    """Stock changes as single conditional UPDATEs: correct under concurrency on SQLite and PostgreSQL."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _where(self, sku: str, pool: str):
        i = orm.inventory.c
        return and_(i.sku == sku, i.pool == pool)

    def try_reserve(self, sku: str, pool: str, qty: int) -> bool:
        i = orm.inventory.c
        result = self.conn.execute(update(orm.inventory)
                                   .where(and_(self._where(sku, pool), i.on_hand - i.reserved >= qty))
                                   .values(reserved=i.reserved + qty))
        return result.rowcount == 1

    def _must(self, stmt, what: str) -> None:
        if self.conn.execute(stmt).rowcount != 1:
            raise RuntimeError(f"inventory inconsistent: cannot {what}")

    def release(self, sku: str, pool: str, qty: int) -> None:
        i = orm.inventory.c
        self._must(update(orm.inventory).where(and_(self._where(sku, pool), i.reserved >= qty))
                   .values(reserved=i.reserved - qty), f"release {qty} of {sku}/{pool}")

    def commit_sale(self, sku: str, pool: str, qty: int) -> None:
        i = orm.inventory.c
        self._must(update(orm.inventory)
                   .where(and_(self._where(sku, pool), i.reserved >= qty, i.on_hand >= qty))
                   .values(on_hand=i.on_hand - qty, reserved=i.reserved - qty), f"sell {qty} of {sku}/{pool}")

    def restock(self, sku: str, pool: str, qty: int) -> None:
        i = orm.inventory.c
        if self.conn.execute(update(orm.inventory).where(self._where(sku, pool))
                             .values(on_hand=i.on_hand + qty)).rowcount == 1:
            return
        if not insert_if_absent(self.conn, orm.inventory, {"sku": sku, "pool": pool, "on_hand": qty,
                                                           "reserved": 0}):
            self.restock(sku, pool, qty)

    def level(self, sku: str, pool: str) -> StockLevel | None:
        r = self.conn.execute(select(orm.inventory).where(self._where(sku, pool))).first()
        return StockLevel(r.sku, r.pool, r.on_hand, r.reserved) if r else None


class SqlLimits:
    """Per-buyer counters: created at 0 if absent, then one conditional UPDATE (race-safe)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _where(self, buyer_id: str, sku: str, key: str):
        c = orm.purchase_counters.c
        return and_(c.buyer_id == buyer_id, c.sku == sku, c.period_key == key)

    def try_consume(self, buyer_id: str, sku: str, key: str, qty: int, max_qty: int) -> bool:
        c = orm.purchase_counters.c
        insert_if_absent(self.conn, orm.purchase_counters,
                         {"buyer_id": buyer_id, "sku": sku, "period_key": key, "used": 0})
        result = self.conn.execute(update(orm.purchase_counters)
                                   .where(and_(self._where(buyer_id, sku, key), c.used + qty <= max_qty))
                                   .values(used=c.used + qty))
        return result.rowcount == 1

    def release(self, buyer_id: str, sku: str, key: str, qty: int) -> None:
        c = orm.purchase_counters.c
        self.conn.execute(update(orm.purchase_counters)
                          .where(and_(self._where(buyer_id, sku, key), c.used >= qty))
                          .values(used=c.used - qty))

    def used(self, buyer_id: str, sku: str, key: str) -> int:
        c = orm.purchase_counters.c
        stmt = select(c.used).where(self._where(buyer_id, sku, key))
        return self.conn.execute(stmt).scalar_one_or_none() or 0
