"""The console services bound to the signed-in user: every action checks the role first.

``ConsoleServices.as_user(principal)`` returns a ``UserServices``; the console's pages only ever get
one (``console.runtime.services()``), so a refused action is refused here — in the application
services — whatever widget a page shows or hides. Every action is recorded as the principal's name:
no page passes a free-text "who".

What each role may do is the one table of ``common.identity`` (``require`` raises ``Forbidden`` with
a message naming the user, the action and the roles that may do it):

- reads of the operational pages (overview, resources, rules, instances, chaos, alerts): ``ops.read``;
- rules apply / rollback: ``rules.apply`` / ``rules.rollback``; chaos: ``chaos.set``;
- alerts: acknowledge ``alerts.ack``, resolve ``alerts.resolve``, silences ``alerts.silence``,
  who is on call ``oncall.set``;
- sales of a shop: ``sales.read`` for that shop; users: ``users.manage``.

A method of ``ConsoleServices`` not listed here (a page added later) is reachable only by a role
with ``ops.read``; one taking a ``by`` argument also needs ``rules.apply`` and acts as the principal.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from common.identity import Forbidden, Principal, allowed, require
from console.services.sales import Period, SalesReport, TodayStrip, period

if TYPE_CHECKING:
    from console.services.facade import ConsoleServices

# ConsoleServices attributes that are stores: never handed to a page
_STORES = frozenset({"metrics", "rules", "fleet", "chaos", "accounts", "skus", "clock", "relay", "_closers"})

# alert-service methods → the action they need (anything else: a read, ``ops.read``)
# facade methods that record who acted, and the action each needs (default: rules.apply)
_WHO_ACTION = {
    "alert_rule_save": "alerts.rules",
    "alert_rule_set_enabled": "alerts.rules",
    "alert_rule_delete": "alerts.rules",
    "alert_rules_rollback": "alerts.rules",
}

_ALERT_ACTIONS = {
    "acknowledge": "alerts.ack",
    "unacknowledge": "alerts.ack",
    "resolve": "alerts.resolve",
    "silence_alert": "alerts.silence",
    "create_silence": "alerts.silence",
    "update_silence": "alerts.silence",
    "expire_silence": "alerts.silence",
    "delete_silence": "alerts.silence",
    "set_on_call": "oncall.set",
    # the alert rules document: sre and on-call edit it (issue 16), versioned and audited
    "apply": "alerts.rules",
    "set_rule_enabled": "alerts.rules",
    "delete_rule": "alerts.rules",
    "rollback_rules": "alerts.rules",
    "escalate": "alerts.ack",
}
_WHO_ARGS = ("by", "created_by")


class GuardedAlerts:
    """The alert service as a principal may use it: each call checks the role, "who" is the principal."""

    def __init__(self, inner: Any, principal: Principal) -> None:
        self._inner = inner
        self._principal = principal

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target = getattr(self._inner, name)
        if not callable(target):
            require(self._principal, "ops.read")
            return target
        action = _ALERT_ACTIONS.get(name, "ops.read")
        who = self._principal.name

        @functools.wraps(target)
        def call(*args: Any, **kwargs: Any) -> Any:
            require(self._principal, action)
            if action != "ops.read":
                args, kwargs = _as_principal(target, args, kwargs, who)
            return target(*args, **kwargs)

        return call


def _as_principal(fn: Any, args: tuple, kwargs: dict, who: str) -> tuple[tuple, dict]:
    """Replace whatever "by" / "created_by" the caller passed with the signed-in user's name."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    args = list(args)
    for name in _WHO_ARGS:
        if name in kwargs:
            kwargs[name] = who
        elif name in params:
            i = params.index(name)
            if i < len(args):
                args[i] = who
            else:
                kwargs[name] = who
    return tuple(args), kwargs


class UserServices:
    """``ConsoleServices`` for one signed-in principal (one per browser session and run)."""

    def __init__(self, services: ConsoleServices, principal: Principal) -> None:
        self._svc = services
        self.principal = principal
        self.app = services.app
        self.currency = services.currency

    # ------------------------------------------------------------------ who may
    def may(self, action: str, shop: str | None = None) -> bool:
        return allowed(self.principal, action, shop)

    def refusal(self, action: str, shop: str | None = None) -> str | None:
        """The message of a refused action, or None when the principal may do it (pages show it)."""
        try:
            require(self.principal, action, shop)
        except Forbidden as exc:
            return str(exc)
        return None

    def now(self) -> Any:
        return self._svc.now()

    def _read(self) -> None:
        require(self.principal, "ops.read")

    # ------------------------------------------------------------------ operational reads
    def overview(self, range_key: str) -> Any:
        self._read()
        return self._svc.overview(range_key)

    def resources(self, range_key: str) -> Any:
        self._read()
        return self._svc.resources(range_key)

    def resource_detail(self, resource: str, range_key: str) -> Any:
        self._read()
        return self._svc.resource_detail(resource, range_key)

    def rules_in_force(self) -> Any:
        self._read()
        return self._svc.rules_in_force()

    def validate(self, document: Mapping[str, Any]) -> Any:
        self._read()
        return self._svc.validate(document)

    def parse_yaml(self, text: str) -> Any:
        self._read()
        return self._svc.parse_yaml(text)

    def diff(self, document: Mapping[str, Any], *, current: Any = True) -> str:
        self._read()
        return self._svc.diff(document, current=current)

    def known_resources(self, errors: list[str] | None = None) -> list[str]:
        self._read()
        return self._svc.known_resources(errors)

    def history(self) -> Any:
        self._read()
        return self._svc.history()

    def impact(self, resource: str, proposal: Any, minutes: int) -> Any:
        self._read()
        return self._svc.impact(resource, proposal, minutes)

    def suggest(self, resource: str, range_s: int) -> Any:
        self._read()
        return self._svc.suggest(resource, range_s)

    def instances(self) -> Any:
        self._read()
        return self._svc.instances()

    def canary_rollout(self) -> Any:
        self._read()
        return self._svc.canary_rollout()

    def relay_status(self) -> Any:
        self._read()
        return self._svc.relay_status()

    @property
    def traces(self) -> Any:
        """The kept-trace reader (``tradeguard.tracing.TraceReader``), or None: no span store."""
        self._read()
        return self._svc.traces

    def chaos_settings(self) -> dict[str, Any]:
        self._read()
        return self._svc.chaos_settings()

    def alerts_board(self) -> Any:
        self._read()
        return self._svc.alerts_board()

    def open_alerts(self) -> list[dict[str, Any]]:
        self._read()
        return self._svc.open_alerts()

    def active_silences(self) -> list[dict[str, Any]]:
        self._read()
        return self._svc.active_silences()

    def alert_detail(self, alert_id: int, *, minutes: int = 30) -> Any:
        self._read()
        return self._svc.alert_detail(alert_id, minutes=minutes)

    def alert_history(self, limit: int = 100) -> list[dict[str, Any]]:
        self._read()
        return self._svc.alert_history(limit)

    @property
    def alerts(self) -> GuardedAlerts:
        return GuardedAlerts(self._svc.alerts, self.principal)

    # ------------------------------------------------------------------ changes, as the principal
    def apply(self, document: Mapping[str, Any], why: str) -> int:
        require(self.principal, "rules.apply")
        return self._svc.apply(document, self.principal.name, why)

    def rollback(self, n: int, why: str) -> int:
        require(self.principal, "rules.rollback")
        return self._svc.rollback(n, self.principal.name, why)

    def set_chaos(self, *, latency_ms: int, error_rate: float, outage: bool) -> dict[str, Any]:
        require(self.principal, "chaos.set")
        return self._svc.set_chaos(latency_ms=latency_ms, error_rate=error_rate, outage=outage,
                                   by=self.principal.name)

    def alert_action(self, action: str, alert_id: int, comment: str = "") -> dict[str, Any]:
        require(self.principal, "alerts.resolve" if action == "resolve" else "alerts.ack")
        return self._svc.alert_action(action, alert_id, self.principal.name, comment)

    def silence(self, matchers: Sequence[str], *, comment: str, duration: str) -> dict[str, Any]:
        require(self.principal, "alerts.silence")
        return self._svc.silence(matchers, by=self.principal.name, comment=comment, duration=duration)

    def expire_silence(self, silence_id: int) -> dict[str, Any]:
        require(self.principal, "alerts.silence")
        return self._svc.expire_silence(silence_id, self.principal.name)

    # ------------------------------------------------------------------ sales (shop-scoped)
    def sales_shops(self) -> list[str]:
        return self._svc.sales_shops(self.principal)

    def sales_period(self, first: date, last: date) -> Period:
        return period(first, last)

    def sales_report(self, shop: str, p: Period) -> SalesReport:
        return self._svc.sales_report(self.principal, shop, p)

    def sales_today(self, shop: str) -> TodayStrip:
        return self._svc.sales_today(self.principal, shop)

    # ------------------------------------------------------------------ users (admin)
    def _accounts(self) -> Any:
        require(self.principal, "users.manage")
        if self._svc.accounts is None:
            raise RuntimeError("no account service is configured on this console")
        return self._svc.accounts

    def list_users(self) -> list[Any]:
        return self._accounts().list_users()

    def add_user(self, name: str, role: str, password: str, shops: Sequence[str] = ()) -> Any:
        return self._accounts().add_user(name, role, password, shops=shops, by=self.principal)

    def set_password(self, name: str, password: str) -> None:
        self._accounts().set_password(name, password, by=self.principal)

    def disable_user(self, name: str) -> None:
        self._accounts().disable(name, by=self.principal)

    def enable_user(self, name: str) -> None:
        self._accounts().enable(name, by=self.principal)

    # ------------------------------------------------------------------ anything added later
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in _STORES:
            raise AttributeError(
                f"{name!r} is not available to console pages: use a method of the console services"
            )
        target = getattr(self._svc, name)
        if not callable(target):
            return target
        try:
            takes_who = any(w in inspect.signature(target).parameters for w in _WHO_ARGS)
        except (TypeError, ValueError):
            takes_who = False
        principal = self.principal

        @functools.wraps(target)
        def call(*args: Any, **kwargs: Any) -> Any:
            if takes_who:  # a change, recorded as the signed-in user
                require(principal, _WHO_ACTION.get(name, "rules.apply"))
                args, kwargs = _as_principal(target, args, kwargs, principal.name)
            else:
                require(principal, "ops.read")
            return target(*args, **kwargs)

        return call
