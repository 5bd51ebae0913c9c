"""``ConsoleServices``: the one object pages talk to.

It holds the stores the composition root opened (``tradeguard.bootstrap.build_console_services``)
and hands each page area's work to its module (overview, resources, rules, instances, alerts).
Reads are bounded per call; each live read returns how many store queries it issued
(``queries``), so the page docstrings' counts are checked by tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from collectors.query import MetricStore
from common.identity import Principal, require, visible_shops
from console.services import alert_rules, alerts, proposals, rules
from console.services import sales as sales_area
from console.services.alert_rules import AlertRulesPort
from console.services.blocks import BlockedData, read_blocked
from console.services.common import FieldError, error_text
from console.services.instances import (
    InstancesData,
    RelayView,
    RolloutView,
    instances_data,
    relay_view,
    rollout,
    worker_views,
)
from console.services.overview import OverviewData, read_overview
from console.services.ports import AlertsPort, ChaosPort, FleetPort, RelayPort, RuleStorePort
from console.services.resources import ResourceDetail, ResourcesData, read_resource_detail, read_resources
from console.services.rules import RuleVersionView
from console.services.sales import SalesReport, SkuSalesPort, TodayStrip
from dashboards.impact import FlowProposal, ImpactResult, ParamProposal
from dashboards.suggest import SuggestResult
from domain.ports import Clock

log = logging.getLogger(__name__)


class ConsoleServices:
    def __init__(
        self,
        *,
        app: str,
        metrics: MetricStore,
        rules: RuleStorePort,
        fleet: FleetPort,
        chaos: ChaosPort,
        alerts: AlertsPort,
        clock: Clock,
        currency: str = "¥",
        accounts: Any = None,
        skus: SkuSalesPort | None = None,
        closers: Sequence[Callable[[], None]] = (),
        alert_rules: AlertRulesPort | None = None,
        workers: Any = None,
        relay: RelayPort | None = None,
        traces: Any = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.rules = rules
        self.fleet = fleet
        self.chaos = chaos
        self.alerts = alerts
        self.clock = clock
        self.currency = currency
        self.accounts = accounts  # accounts.service.AccountService: sign-in, sessions, users
        self.skus = skus  # the per-SKU read model of the trading DB (Sales page)
        self._closers = list(closers)
        # the Alert rules page: AlertService serves both ports unless told otherwise
        self.alert_rules: AlertRulesPort = alert_rules if alert_rules is not None else alerts  # type: ignore[assignment]
        self.workers = workers  # collectors.lease.WorkerBeats, or None
        self.relay = relay  # the journal relay's status (Instances page), or None: not wired
        self.traces = traces  # tradeguard.tracing.TraceReader over the span store, or None: no traces

    def as_user(self, principal: Principal) -> Any:
        """These services bound to the signed-in ``principal``: every action checks its role first
        (``console.services.access.UserServices``) and the audit records the principal's name."""
        from console.services.access import UserServices

        return UserServices(self, principal)

    def close(self) -> None:
        for fn in self._closers:
            try:
                fn()
            except Exception:  # closing is best effort
                log.exception("closing a console store failed")

    def now(self) -> datetime:
        return self.clock.now()

    # ------------------------------------------------------------------ overview, resources
    def overview(self, range_key: str) -> OverviewData:
        """13 metric-store queries (16 if the store has no percentiles)."""
        return read_overview(self.metrics, self.app, range_key, self.now())

    def proposal_preview(self, alert: Mapping[str, Any], principal: Principal | None = None) -> Any:
        """An alert's proposed fix: diff against the rules in force and its impact preview (or None)."""
        return proposals.preview(self, alert, principal)

    def apply_proposal(
        self, alert_id: int, *, by: str, expected_rules_version: int, principal: Principal | None = None
    ) -> dict[str, Any]:
        """Apply an alert's proposed fix as a new rules version, if the rules are still the ones seen."""
        return proposals.apply(
            self, alert_id, by=by, expected_rules_version=expected_rules_version, principal=principal
        )

    def blocked(self, range_key: str) -> BlockedData:
        """Who is blocked in the range (the guardians' block log): top origins, client IPs, buyers, SKUs."""
        return read_blocked(self.metrics, self.app, range_key, self.now())

    def resources(self, range_key: str) -> ResourcesData:
        """Every resource's totals over the range: 3 metric-store queries."""
        return read_resources(self.metrics, self.app, range_key, self.now())

    def resource_detail(self, resource: str, range_key: str) -> ResourceDetail:
        """One resource's charts and rules: 2 metric-store queries (3 for order.place) + 1 rule-store read."""
        errors: list[str] = []
        current = None
        try:
            current = self.rules_in_force()
        except Exception as exc:
            errors.append(f"rules: {error_text(exc)}")
        return read_resource_detail(self.metrics, self.app, resource, range_key, self.now(), current, errors)

    # ------------------------------------------------------------------ rules
    def rules_in_force(self) -> RuleVersionView | None:
        return rules.version_view(self.rules.current(self.app))

    def validate(self, document: Mapping[str, Any]) -> list[FieldError]:
        """Errors of a draft document (empty when valid), each naming its field path."""
        return rules.validate(document)

    def parse_yaml(self, text: str) -> tuple[dict[str, Any] | None, list[FieldError]]:
        """YAML (or JSON) text → (document, errors); a syntax error names the line."""
        return rules.parse_yaml(text)

    def diff(self, document: Mapping[str, Any], *, current: RuleVersionView | bool | None = True) -> str:
        """Unified diff (YAML) of the version in force → ``document``; empty when nothing changes.

        Pass ``current`` (the version in force, or None for none) when the caller has just read it."""
        if current is True:
            current = self.rules_in_force()
        assert current is None or isinstance(current, RuleVersionView)
        return rules.diff(document, current)

    def apply(self, document: Mapping[str, Any], by: str, why: str) -> int:
        """Validate and store ``document`` as a new version; returns the version number."""
        return rules.apply(self.rules, self.app, document, by, why)

    def known_resources(self, errors: list[str] | None = None) -> list[str]:
        """The core's resource names and those with traffic in the last hour: 1 metric-store query."""
        return rules.known_resources(self.metrics, self.app, self.now(), errors)

    def history(self) -> list[RuleVersionView]:
        return rules.history(self.rules, self.app)

    def rollback(self, n: int, by: str, why: str) -> int:
        return rules.rollback(self.rules, self.app, n, by, why)

    def impact(self, resource: str, proposal: FlowProposal | ParamProposal, minutes: int) -> ImpactResult:
        """Replay the last ``minutes`` of ``resource``'s recorded traffic: 1 metric-store query."""
        return rules.impact(self.metrics, self.app, resource, proposal, minutes, self.now())

    def suggest(self, resource: str, range_s: int) -> tuple[SuggestResult, ImpactResult | None]:
        """A threshold suggestion for ``resource`` from its traffic over the last ``range_s`` (1
        metric-store query) and the impact preview of the proposed QPS threshold (1 more, if any)."""
        return rules.suggest(self.metrics, self.app, resource, range_s, self.now())

    # ------------------------------------------------------------------ instances
    def instances(self) -> InstancesData:
        """Every node from the heartbeats: 1 fleet read + 1 rule-store read."""
        errors: list[str] = []
        in_force: int | None = None
        try:
            current = self.rules_in_force()
            in_force = current.version if current else None
        except Exception as exc:
            errors.append(f"rules: {error_text(exc)}")
        try:
            nodes = list(self.fleet.nodes(self.now()))
        except Exception as exc:
            nodes = []
            errors.append(f"heartbeats: {error_text(exc)}")
        workers = []
        if self.workers is not None:
            try:
                workers = worker_views(self.workers.workers(), self.workers.leader())
            except Exception as exc:
                errors.append(f"workers: {error_text(exc)}")
        return instances_data(
            nodes, in_force, errors, queries=2 + (self.workers is not None), workers=workers
        )

    def canary_rollout(self) -> RolloutView | None:
        """The app's running canary and which nodes run it (1 rule-store read + 1 fleet read)."""
        return rollout(self.rules, self.app, self.fleet.nodes(self.now()))

    def relay_status(self) -> RelayView | None:
        """The journal relay's lag, cursor and leader (1 control-DB read); None when not wired."""
        return relay_view(self.relay.status()) if self.relay is not None else None

    # ------------------------------------------------------------------ chaos
    def chaos_settings(self) -> dict[str, Any]:
        """1 heartbeat read + 1 node call."""
        return self.chaos.get()

    def set_chaos(self, *, latency_ms: int, error_rate: float, outage: bool, by: str) -> dict[str, Any]:
        return self.chaos.set(latency_ms=latency_ms, error_rate=error_rate, outage=outage, by=by)

    # ------------------------------------------------------------------ alerts
    def alerts_board(self) -> alerts.AlertsBoard:
        """Open alerts, silences and who is on call: 3 alert-service reads."""
        return alerts.board(self.alerts)

    def open_alerts(self) -> list[dict[str, Any]]:
        """Firing and pending alerts (1 alert-service read)."""
        return list(self.alerts.list_alerts(("firing", "pending")))

    def active_silences(self) -> list[dict[str, Any]]:
        """Active and pending silences (1 alert-service read)."""
        return list(self.alerts.silences())

    def alert_detail(self, alert_id: int, *, minutes: int = 30) -> tuple[dict[str, Any], dict[str, Any]]:
        """(timeline, metric behind the alert): 2 alert-service reads (the second queries metrics)."""
        return alerts.detail(self.alerts, alert_id, minutes=minutes)

    def gateway_errors(self, alert: dict[str, Any]) -> alerts.GatewayErrors | None:
        """A payment alert's gateway failures over its window (2 metric-store queries); None otherwise."""
        if not alerts.is_payment_alert(alert):
            return None
        return alerts.gateway_errors(self.metrics, self.app, alert, self.now())

    def alert_history(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.alerts.history(limit=limit)

    def alert_action(self, action: str, alert_id: int, by: str, comment: str = "") -> dict[str, Any]:
        """``acknowledge`` | ``unacknowledge`` | ``resolve`` an alert as ``by``."""
        return alerts.act(self.alerts, action, alert_id, by, comment)

    def silence(self, matchers: Sequence[str], *, by: str, comment: str, duration: str) -> dict[str, Any]:
        return alerts.silence(self.alerts, matchers, by=by, comment=comment, duration=duration)

    def expire_silence(self, silence_id: int, by: str) -> dict[str, Any]:
        return alerts.expire_silence(self.alerts, silence_id, by)

    # ------------------------------------------------------------------ alert rules
    def alert_rules_list(self) -> list[dict[str, Any]]:
        """Every alert rule (its document plus open alert counts): 1 alert-service read."""
        return alert_rules.list_rules(self.alert_rules)

    def alert_rule_validate(self, doc: Mapping[str, Any]) -> list[FieldError]:
        """The YAML import's validation of one rule; each error names its field (``rule.op``)."""
        return alert_rules.validate(doc)

    def alert_rule_diff(self, current: Mapping[str, Any] | None, proposed: Mapping[str, Any] | None) -> str:
        return alert_rules.diff(current, proposed)

    def alert_rule_save(
        self, doc: Mapping[str, Any], *, by: str, why: str, original: str | None = None
    ) -> dict[str, Any]:
        """Create (``original`` None) or replace a rule as ``by``; a new version of the alert rules."""
        return alert_rules.save(self.alert_rules, doc, by=by, why=why, original=original)

    def alert_rule_set_enabled(self, name: str, enabled: bool, *, by: str, why: str) -> dict[str, Any]:
        return alert_rules.set_enabled(self.alert_rules, name, enabled, by=by, why=why)

    def alert_rule_delete(self, name: str, *, by: str, why: str) -> None:
        alert_rules.delete(self.alert_rules, name, by=by, why=why)

    def alert_rules_history(self, limit: int = 100) -> list[dict[str, Any]]:
        return alert_rules.history(self.alert_rules, limit)

    def alert_rules_rollback(self, version: int, *, by: str, why: str) -> dict[str, Any]:
        return alert_rules.rollback(self.alert_rules, version, by=by, why=why)

    def alert_rule_backtest(
        self, doc: Mapping[str, Any], *, hours: float = 24, interval_s: int = 10
    ) -> dict[str, Any]:
        """Proposed vs in force over the last ``hours``: one metric-store read per aggregate of the shape."""
        return alert_rules.backtest(self.alert_rules, doc, hours=hours, interval_s=interval_s, now=self.now())

    # ------------------------------------------------------------------ sales (shop-scoped)
    def sales_shops(self, principal: Principal) -> list[str]:
        """The shops ``principal`` may pick: a merchant's own; every shop with orders (90 days) for
        sre/admin (1 metric-store query)."""
        require(principal, "sales.read")
        if principal.role == "merchant":
            return list(principal.shops)
        errors: list[str] = []
        return visible_shops(principal, sales_area.known_shops(self.metrics, self.app, self.now(), errors))

    def sales_report(self, principal: Principal, shop: str, period: sales_area.Period) -> SalesReport:
        """One shop's figures over ``period`` vs the previous one (8 reads), if ``principal`` may read it."""
        require(principal, "sales.read", shop)
        return sales_area.read_sales(self.metrics, self.skus, self.app, shop, period, self.currency)

    def sales_today(self, principal: Principal, shop: str) -> TodayStrip:
        """The shop since UTC midnight (2 metric-store queries), if ``principal`` may read it."""
        require(principal, "sales.read", shop)
        return sales_area.read_today(self.metrics, self.app, shop, self.now())
