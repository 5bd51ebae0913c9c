"""Who is acting, and what each role may do: ONE permission table for the whole product.

It lives in ``common`` (the bottom layer) so that every package that enforces a permission in its
own services — ``alerts`` (acknowledge, silence, resolve), the console services (rules, chaos),
``accounts`` (users) — checks the same table without importing each other (``alerts`` and
``accounts`` sit side by side in the import layers). ``accounts`` re-exports it.

- ``Principal(name, role, shops)``: the signed-in user; a merchant is bound to one or more shops.
- ``PERMISSIONS``: role → the actions it may do.
- ``require(principal, action, shop=None)`` raises ``Forbidden`` with a message a person can act
  on: ``user bob (merchant) may not apply rules; needs role sre or admin``. For a shop-scoped
  action (``sales.read``) a merchant is refused any shop it is not bound to; ``shop=None`` asks
  whether the role may do the action at all (e.g. to show the Sales page with the merchant's shops).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

ROLES: tuple[str, ...] = ("admin", "sre", "oncall", "merchant")

# action → what it means in a sentence ("may not <phrase>")
ACTIONS: dict[str, str] = {
    "ops.read": "read the operational pages",
    "alerts.ack": "acknowledge alerts",
    "alerts.silence": "silence alerts",
    "alerts.resolve": "resolve alerts",
    "oncall.set": "change the on-call rotation",
    "alerts.rules": "change alert rules",
    "rules.apply": "apply rules",
    "rules.rollback": "roll back rules",
    "chaos.set": "change payment chaos",
    "sales.read": "read sales",
    "users.manage": "manage users",
}

# Actions scoped to a shop: a merchant may do them only for its own shops.
SHOP_SCOPED: frozenset[str] = frozenset({"sales.read"})

_ONCALL = frozenset(
    {"ops.read", "alerts.ack", "alerts.silence", "alerts.resolve", "oncall.set", "alerts.rules"}
)
_SRE = _ONCALL | {"rules.apply", "rules.rollback", "chaos.set", "sales.read"}

PERMISSIONS: dict[str, frozenset[str]] = {
    "oncall": _ONCALL,
    "sre": _SRE,
    "admin": _SRE | {"users.manage"},
    "merchant": frozenset({"sales.read"}),
}


class Forbidden(PermissionError):
    """The principal may not do the action; the message says who, what, and which role may."""

    def __init__(self, message: str, *, user: str, role: str, action: str, shop: str | None = None) -> None:
        super().__init__(message)
        self.user = user
        self.role = role
        self.action = action
        self.shop = shop


@dataclass(frozen=True)
class Principal:
    """A signed-in user: name, role (one of ``ROLES``) and, for a merchant, the shops it is bound to."""

    name: str
    role: str
    shops: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if not self.name:
            raise ValueError("name must not be empty")
        object.__setattr__(self, "shops", tuple(self.shops))

    def __str__(self) -> str:
        return f"{self.name} ({self.role})"


_LEAST_FIRST = ("merchant", "oncall", "sre", "admin")


def roles_allowed(action: str) -> list[str]:
    """The roles that may do ``action``, the least privileged first ("needs role sre or admin")."""
    _check_action(action)
    return [role for role in _LEAST_FIRST if action in PERMISSIONS[role]]


def allowed(principal: Principal, action: str, shop: str | None = None) -> bool:
    try:
        require(principal, action, shop)
    except Forbidden:
        return False
    return True


def require(principal: Principal, action: str, shop: str | None = None) -> None:
    """Raise ``Forbidden`` unless ``principal`` may do ``action`` (on ``shop`` for a shop-scoped one)."""
    _check_action(action)
    what = ACTIONS[action]
    if action not in PERMISSIONS[principal.role]:
        needs = " or ".join(roles_allowed(action))
        raise Forbidden(
            f"user {principal.name} ({principal.role}) may not {what}; needs role {needs}",
            user=principal.name, role=principal.role, action=action, shop=shop,
        )
    if shop is not None and action in SHOP_SCOPED and principal.role == "merchant" \
            and shop not in principal.shops:
        bound = ", ".join(principal.shops) or "none"
        raise Forbidden(
            f"user {principal.name} ({principal.role}) may not {what} of shop {shop}; "
            f"bound to shops: {bound}",
            user=principal.name, role=principal.role, action=action, shop=shop,
        )


def visible_shops(principal: Principal, shops: Iterable[str]) -> list[str]:
    """Of ``shops``, those whose sales ``principal`` may read (every one for sre/admin)."""
    return [s for s in shops if allowed(principal, "sales.read", s)]


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
