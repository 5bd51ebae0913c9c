"""Inventory reservation: atomic conditional reservation from one pool of a SKU's stock."""

from __future__ import annotations

from domain.capabilities.base import OrderContext, PricedLine
from domain.errors import OutOfStock
from domain.model import DEFAULT_POOL, FLASH_POOL, OrderLine, Product, warehouse_of
from domain.storage import UnitOfWork


class PooledInventory:
    """Reserves from ``pool`` (regular stock by default; the flash-sale allocation for flash_sale)."""

    def __init__(self, pool_name: str = DEFAULT_POOL) -> None:
        self.pool_name = pool_name

    def pool(self, ctx: OrderContext, product: Product) -> str:
        return self.pool_name

    def reserve(self, uow: UnitOfWork, line: PricedLine) -> None:
        if uow.inventory.try_reserve(line.sku, line.pool, line.qty):
            return
        level = uow.inventory.level(line.sku, line.pool)
        available = max(level.available, 0) if level else 0
        what = "flash-sale stock" if line.pool == FLASH_POOL else "stock"
        raise OutOfStock(
            f"only {available} unit(s) of {line.sku} in {what}, {line.qty} requested; lower the quantity",
            field=f"lines[{line.request.index}].qty",
            extra={"sku": line.sku, "available": available, "requested": line.qty, "pool": line.pool},
        )

    def release(self, uow: UnitOfWork, line: OrderLine) -> None:
        uow.inventory.release(line.sku, line.pool, line.qty)

    def commit_sale(self, uow: UnitOfWork, line: OrderLine) -> None:
        uow.inventory.commit_sale(line.sku, line.pool, line.qty)


class WarehouseInventory(PooledInventory):
    """Regular stock kept in warehouses: the line is served by the warehouse nearest to the delivery
    province that has the units, then the one with the largest stock (then by id). A SKU with no
    warehouse stock is reserved from the shared pool (``default``) as before."""

    def pool(self, ctx: OrderContext, product: Product) -> str:
        qty = ctx.quantities.get(product.sku, 1)
        candidates = [lv for (sku, pool), lv in ctx.stock.items()
                      if sku == product.sku and warehouse_of(pool) is not None]
        if not candidates:
            return self.pool_name

        def rank(lv):  # type: ignore[no-untyped-def]
            wid = warehouse_of(lv.pool) or ""
            return (lv.available < qty, ctx.warehouse_distance.get(wid, float("inf")), -lv.available, wid)

        return min(candidates, key=rank).pool
