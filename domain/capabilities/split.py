"""Order split: one sub-order per shop (shops ship and settle separately)."""

from __future__ import annotations

from collections.abc import Sequence

from domain.capabilities.base import PricedLine


class ByShopSplit:
    def split(self, lines: Sequence[PricedLine]) -> dict[str, list[PricedLine]]:
        out: dict[str, list[PricedLine]] = {}
        for line in lines:
            out.setdefault(line.shop_id, []).append(line)
        return out
