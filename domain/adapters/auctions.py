"""SQL auction store: bids serialized by one conditional UPDATE (no lost update on SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from domain.adapters import orm
from domain.adapters.repository import insert_if_absent
from domain.errors import ConcurrentUpdate
from domain.model.auction import AWARDED, OPEN, Auction, Bid

_A = orm.auctions.c
_FIELDS = ("id", "shop_id", "sku", "start_price_cents", "increment_cents", "reserve_cents", "starts_at",
           "ends_at", "created_at", "status", "current_cents", "leader_buyer_id", "next_min_cents", "bids",
           "version", "order_id")


class SqlAuctions:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @staticmethod
    def _row(a: Auction) -> dict[str, Any]:
        return {**{k: getattr(a, k) for k in _FIELDS}, "offered": json.dumps(a.offered)}

    def add(self, auction: Auction) -> bool:
        return insert_if_absent(self.conn, orm.auctions, self._row(auction))

    def get(self, auction_id: str) -> Auction | None:
        r = self.conn.execute(select(orm.auctions).where(_A.id == auction_id)).mappings().first()
        if r is None:
            return None
        return Auction(**{k: r[k] for k in _FIELDS}, offered=json.loads(r["offered"] or "[]"))

    def try_bid(self, auction_id: str, buyer_id: str, amount_cents: int) -> bool:
        # The WHERE re-checks the price under the row lock: of two concurrent bids for the same price,
        # the second finds next_min_cents moved on and changes nothing (PostgreSQL re-evaluates the
        # WHERE after the first commits; SQLite has one writer at a time).
        result = self.conn.execute(
            update(orm.auctions)
            .where(and_(_A.id == auction_id, _A.status == OPEN, _A.next_min_cents <= amount_cents))
            .values(current_cents=amount_cents, leader_buyer_id=buyer_id,
                    next_min_cents=amount_cents + _A.increment_cents, bids=_A.bids + 1,
                    version=_A.version + 1))
        return result.rowcount == 1

    def add_bid(self, bid: Bid) -> None:
        self.conn.execute(insert(orm.auction_bids).values(
            id=bid.id, auction_id=bid.auction_id, buyer_id=bid.buyer_id, amount_cents=bid.amount_cents,
            placed_at=bid.placed_at, address=json.dumps(bid.address) if bid.address else None))

    def bids(self, auction_id: str) -> list[Bid]:
        b = orm.auction_bids.c
        rows = self.conn.execute(select(orm.auction_bids).where(b.auction_id == auction_id)
                                 .order_by(b.amount_cents.desc(), b.placed_at, b.id)).mappings()
        return [Bid(id=r["id"], auction_id=r["auction_id"], buyer_id=r["buyer_id"],
                    amount_cents=r["amount_cents"], placed_at=r["placed_at"],
                    address=json.loads(r["address"]) if r["address"] else None) for r in rows]

    def save(self, auction: Auction) -> None:
        result = self.conn.execute(
            update(orm.auctions).where(and_(_A.id == auction.id, _A.version == auction.version))
            .values(status=auction.status, order_id=auction.order_id, offered=json.dumps(auction.offered),
                    version=auction.version + 1))
        if result.rowcount != 1:
            raise ConcurrentUpdate(f"auction {auction.id} was changed by someone else; retry")
        auction.version += 1

    def due(self, now: datetime, limit: int) -> list[str]:
        cond = or_(and_(_A.status == OPEN, _A.ends_at <= now), _A.status == AWARDED)
        return list(self.conn.execute(select(_A.id).where(cond).order_by(_A.ends_at, _A.id)
                                      .limit(limit)).scalars())

    def skus(self, shop_id: str, now: datetime) -> set[str]:
        return set(self.conn.execute(select(_A.sku).where(and_(
            _A.shop_id == shop_id, _A.status == OPEN, _A.ends_at > now))).scalars())
