"""The console's application services: the only thing pages talk to.

Pages get plain data back (dataclasses, pandas frames, plotly-ready series) and never
build SQL, touch ORM models or open stores. The composition root opens the stores
(``tradeguard.bootstrap.build_console_services``) and hands a ``ConsoleServices`` to the
Streamlit app; tests build one directly with fakes implementing the ports.

One module per page area: ``overview``, ``resources``, ``rules``, ``instances``, ``alerts``;
``sales`` (a shop's figures), ``access`` (the services bound to the signed-in user);
``ports`` (what the stores must do) and ``common`` (field errors, rule types, a bounded
metric read) are shared; ``facade`` holds ``ConsoleServices``.
"""

from console.services.access import UserServices
from console.services.alert_rules import AlertRuleRefused, AlertRulesPort
from console.services.alerts import ActionFailed, AlertsBoard
from console.services.common import RULE_TYPES, FieldError, errors_from
from console.services.facade import ConsoleServices
from console.services.instances import InstancesData, InstanceView
from console.services.overview import BreakerView, OverviewData
from console.services.ports import AlertsPort, ChaosPort, FleetPort, RuleStorePort
from console.services.resources import ResourceDetail, ResourceRow, ResourcesData
from console.services.rules import (
    RuleDocumentInvalid,
    RuleVersionView,
    document_yaml,
    unified_diff,
    version_view,
)
from console.services.sales import Period, SalesReport, SkuSalesPort, TodayStrip, period

__all__ = [
    "RULE_TYPES",
    "ActionFailed",
    "AlertRuleRefused",
    "AlertRulesPort",
    "AlertsBoard",
    "AlertsPort",
    "BreakerView",
    "ChaosPort",
    "ConsoleServices",
    "FieldError",
    "FleetPort",
    "InstanceView",
    "InstancesData",
    "OverviewData",
    "Period",
    "ResourceDetail",
    "ResourceRow",
    "ResourcesData",
    "RuleDocumentInvalid",
    "RuleStorePort",
    "RuleVersionView",
    "SalesReport",
    "SkuSalesPort",
    "TodayStrip",
    "UserServices",
    "document_yaml",
    "errors_from",
    "period",
    "unified_diff",
    "version_view",
]
