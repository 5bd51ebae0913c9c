"""Catalog and helpers for the fulfilment / after-sale / address tests (stock in two warehouses)."""

from __future__ import annotations

from domain.model import Catalog, Product, Shop, StockLevel, Warehouse

HZ = {"country": "CN", "province": "Zhejiang", "city": "Hangzhou", "district": "Xihu",
      "street": "1 Wensan Rd", "recipient": "Li Lei", "phone": "+86 138 0000 0000"}
SZ = {"country": "CN", "province": "Guangdong", "city": "Shenzhen", "district": "Nanshan",
      "street": "9 Keyuan Rd", "recipient": "Han Meimei", "phone": "+86 139 0000 0000"}
BJ = {"country": "CN", "province": "Beijing", "city": "Beijing", "district": "Haidian",
      "street": "5 Zhongguancun St", "recipient": "Wang Wu", "phone": "+86 137 0000 0000"}


def warehouse_catalog() -> Catalog:
    return Catalog(
        shops=[Shop("w1", "Warehoused", auto_receive_days=3, refund_window_days=7)],
        products=[Product("W1", "w1", "Jacket", 10000), Product("W2", "w1", "Hat", 2000)],
        stock=[StockLevel("W1", "wh:hz", 5), StockLevel("W1", "wh:sz", 8),
               StockLevel("W2", "wh:sz", 4)],
        warehouses=[Warehouse("hz", "Hangzhou DC", "CN", "CN-ZJ", "330100"),
                    Warehouse("sz", "Shenzhen DC", "CN", "CN-GD", "440300")],
    )
