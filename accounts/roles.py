"""The role × action table, re-exported from ``common.identity`` (one table for the whole product).

It lives in ``common`` because ``alerts`` enforces it too and may not import ``accounts``.
"""

from __future__ import annotations

from common.identity import (
    ACTIONS,
    PERMISSIONS,
    ROLES,
    SHOP_SCOPED,
    Forbidden,
    Principal,
    allowed,
    require,
    roles_allowed,
    visible_shops,
)

__all__ = [
    "ACTIONS",
    "PERMISSIONS",
    "ROLES",
    "SHOP_SCOPED",
    "Forbidden",
    "Principal",
    "allowed",
    "require",
    "roles_allowed",
    "visible_shops",
]
