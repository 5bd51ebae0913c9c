"""Commands accepted by the application services (plain values, independent of HTTP DTOs)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from domain.model import Address


@dataclass(frozen=True)
class LineItem:
    sku: str
    qty: int


@dataclass(frozen=True)
class PlaceOrder:
    buyer_id: str
    tx_type: str
    channel: str
    lines: Sequence[LineItem]
    address: Address | Mapping[str, str]
    idempotency_key: str
    extra: Mapping[str, Any] = field(default_factory=dict)  # room for later tx types (pre-sale deposit...)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlaceOrder:
        return cls(
            buyer_id=data["buyer_id"], tx_type=data["tx_type"], channel=data["channel"],
            lines=[LineItem(sku=li["sku"], qty=li["qty"]) for li in data["lines"]],
            address=data["address"], idempotency_key=data["idempotency_key"],
            extra=data.get("extra") or {},
        )

    def address_dict(self) -> dict[str, str]:
        a = self.address
        return asdict(a) if isinstance(a, Address) else dict(a)

    def fingerprint(self) -> str:
        """Hash of the body (minus buyer and key, which scope it) to tell a replay from a conflict."""
        body = {
            "tx_type": self.tx_type, "channel": self.channel,
            "lines": [[li.sku, li.qty] for li in self.lines],
            "address": self.address_dict(), "extra": dict(self.extra),
        }
        raw = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(raw.encode()).hexdigest()
