"""Alert documents in YAML/JSON: load (validated by the models of ``alerts.schema``) and export.

A document is a mapping with any of the sections ``rules``, ``inhibit_rules``, ``route``,
``channels``, ``escalation_policies``, ``rotations`` (see ``alerts.schema`` for every field, or
``tradeguard alerts rules schema`` for its JSON Schema). Every error names the field (a dotted path
such as ``rules[2].query.aggregate``) and what is allowed; a document with any error is rejected whole.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import yaml

from alerts.errors import AlertConfigError
from alerts.model import AlertConfig, AlertRule, Matcher, MetricQuery
from alerts.schema import SECTIONS, json_schema, validate_document, validate_rule
from common.durations import format_duration

__all__ = [
    "SECTIONS",
    "config_to_dict",
    "default_config",
    "default_rules_text",
    "dump_yaml",
    "json_schema",
    "load_text",
    "parse_document",
    "parse_rule",
    "query_to_dict",
    "rule_to_dict",
]


def parse_rule(raw: Any, path: str = "rule") -> AlertRule:
    """Validate one rule document; raise ``AlertConfigError`` with errors below ``path``."""
    return validate_rule(raw, path)


def parse_document(raw: Any) -> AlertConfig:
    """Validate a whole alert document; raise ``AlertConfigError`` listing every error."""
    return validate_document(raw)


def load_text(text: str) -> AlertConfig:
    """Parse YAML (JSON is YAML too)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AlertConfigError([("document", f"not valid YAML/JSON: {exc}")]) from exc
    return parse_document(raw)


def default_rules_text() -> str:
    return resources.files("alerts").joinpath("default_rules.yaml").read_text(encoding="utf-8")


def default_config() -> AlertConfig:
    """The rules (and route, inhibit rules) that ship on by default."""
    return load_text(default_rules_text())


# ------------------------------------------------------------------ export
def query_to_dict(q: MetricQuery) -> dict[str, Any]:
    out: dict[str, Any] = {"measurement": q.measurement}
    if q.ratio is not None:
        out["ratio"] = {"numerator": list(q.ratio.numerator), "denominator": list(q.ratio.denominator)}
    else:
        out["field"] = q.field
    out["aggregate"] = q.aggregate
    out["window"] = format_duration(q.window)
    if q.where:
        out["where"] = dict(q.where)
    if q.group_by:
        out["group_by"] = list(q.group_by)
    if q.function != "value":
        out["function"] = q.function
    if q.bucket is not None:
        out["bucket"] = format_duration(q.bucket)
    return out


def rule_to_dict(rule: AlertRule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name}
    if rule.kind != "metric":
        out["kind"] = rule.kind
    if rule.query is not None:
        out["query"] = query_to_dict(rule.query)
    out["op"] = rule.op
    out["threshold"] = rule.threshold
    out["for"] = format_duration(rule.for_)
    if rule.keep_firing_for:
        out["keep_firing_for"] = format_duration(rule.keep_firing_for)
    out["severity"] = rule.severity
    if rule.labels:
        out["labels"] = dict(rule.labels)
    if rule.annotations:
        out["annotations"] = dict(rule.annotations)
    out["no_data"] = rule.no_data
    out["on_error"] = rule.on_error
    if not rule.enabled:
        out["enabled"] = False
    if rule.on_breaker_state:
        out["on_breaker_state"] = rule.on_breaker_state
    if rule.proposal is not None:
        out["proposal"] = rule.proposal.model_dump(exclude_defaults=True) | {
            "action": rule.proposal.action,
            "resource": rule.proposal.resource,
        }
    return out


def _matchers_out(ms: tuple[Matcher, ...]) -> list[str]:
    return [str(m) for m in ms]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def config_to_dict(config: AlertConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if config.rules is not None:
        out["rules"] = [rule_to_dict(r) for r in config.rules]
    if config.inhibit_rules is not None:
        out["inhibit_rules"] = [
            {"source": _matchers_out(i.source), "target": _matchers_out(i.target), "equal": list(i.equal)}
            for i in config.inhibit_rules
        ]
    if config.route is not None:
        r = config.route
        out["route"] = {
            "receiver": r.receiver,
            "group_by": list(r.group_by),
            "group_wait": format_duration(r.group_wait),
            "group_interval": format_duration(r.group_interval),
            "repeat_interval": format_duration(r.repeat_interval),
        }
    if config.channels is not None:
        out["channels"] = [{"name": c.name, "kind": c.kind, **dict(c.config)} for c in config.channels]
    if config.escalation_policies is not None:
        out["escalation_policies"] = [
            {
                "name": p.name,
                "steps": [
                    {
                        "channels": list(s.channels),
                        **({"wait": format_duration(s.wait)} if s.wait else {}),
                        **({"oncall": s.oncall} if s.oncall else {}),
                    }
                    for s in p.steps
                ],
            }
            for p in config.escalation_policies
        ]
    if config.rotations is not None:
        out["rotations"] = [
            {
                "name": r.name,
                "start": _iso(r.start),
                "shift": format_duration(r.shift),
                "members": [{"name": m.name, **({"email": m.email} if m.email else {})} for m in r.members],
                "overrides": [
                    {"who": o.who, "start": _iso(o.start), "end": _iso(o.end)} for o in r.overrides
                ],
            }
            for r in config.rotations
        ]
    return out


def dump_yaml(config: AlertConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)
