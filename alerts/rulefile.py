"""Alert documents in YAML/JSON: parse with validation, and export.

A document is a mapping with any of the sections ``rules``, ``inhibit_rules``,
``route``, ``channels``, ``escalation_policies``, ``rotations``. Every error names
the field (a dotted path such as ``rules[2].query.aggregate``) and the allowed
values; a document with any error is rejected whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import yaml

from alerts.errors import AlertConfigError
from alerts.model import (
    CHANNEL_KINDS,
    FUNCTIONS,
    KINDS,
    OPS,
    POLICIES,
    SEVERITIES,
    AlertConfig,
    AlertRule,
    Channel,
    EscalationPolicy,
    EscalationStep,
    InhibitRule,
    Matcher,
    Member,
    MetricQuery,
    Override,
    Ratio,
    Rotation,
    Route,
    format_duration,
    parse_duration,
)

# The query model's aggregates (collectors.query.AGGREGATES), repeated to keep this parser pure.
AGGREGATES: tuple[str, ...] = ("sum", "mean", "max", "min", "last", "count", "p50", "p90", "p95", "p99")
SECTIONS = ("rules", "inhibit_rules", "route", "channels", "escalation_policies", "rotations")
RULE_KEYS = {
    "name",
    "kind",
    "query",
    "op",
    "threshold",
    "for",
    "keep_firing_for",
    "severity",
    "labels",
    "annotations",
    "no_data",
    "on_error",
    "enabled",
    "on_breaker_state",
}
QUERY_KEYS = {
    "measurement",
    "field",
    "ratio",
    "aggregate",
    "window",
    "where",
    "group_by",
    "function",
    "bucket",
}
BREAKER_STATES = ("open", "half_open", "closed")


class _Errors:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))


def _duration(raw: Mapping[str, Any], key: str, path: str, errs: _Errors, default: timedelta) -> timedelta:
    if key not in raw or raw[key] is None:
        return default
    try:
        return parse_duration(raw[key])
    except ValueError as exc:
        errs.add(f"{path}.{key}", str(exc))
        return default


def _choice(
    raw: Mapping[str, Any], key: str, path: str, errs: _Errors, allowed: tuple[str, ...], default: str
) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        errs.add(f"{path}.{key}", f"must be one of {', '.join(allowed)}, got {value!r}")
        return default
    return str(value)


def _str_map(raw: Mapping[str, Any], key: str, path: str, errs: _Errors) -> dict[str, str]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        errs.add(f"{path}.{key}", f"must be a mapping of name: value, got {type(value).__name__}")
        return {}
    out = {}
    for k, v in value.items():
        if isinstance(v, Mapping | list):
            errs.add(f"{path}.{key}.{k}", "must be a string")
            continue
        out[str(k)] = str(v)
    return out


def _str_list(value: Any, path: str, errs: _Errors) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errs.add(path, f"must be a list of names, got {value!r}")
        return ()
    return tuple(value)


def _mapping(value: Any, path: str, errs: _Errors) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping):
        errs.add(path, f"must be a mapping, got {type(value).__name__}")
        return None
    return value


def _matchers(value: Any, path: str, errs: _Errors) -> tuple[Matcher, ...]:
    """A mapping ``{label: value}`` (equality) or a list of ``label=value`` strings."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(Matcher(str(k), str(v)) for k, v in value.items())
    if isinstance(value, list):
        out = []
        for i, text in enumerate(value):
            try:
                out.append(Matcher.parse(str(text)))
            except ValueError as exc:
                errs.add(f"{path}[{i}]", str(exc))
        return tuple(out)
    errs.add(path, "must be a mapping label: value or a list of 'label=value' matchers")
    return ()


def _time(value: Any, path: str, errs: _Errors) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    errs.add(path, f"must be an ISO 8601 time such as 2026-11-23T09:00:00Z, got {value!r}")
    return None


def _parse_query(raw: Any, path: str, errs: _Errors) -> MetricQuery | None:
    q = _mapping(raw, path, errs)
    if q is None:
        return None
    for key in q:
        if key not in QUERY_KEYS:
            errs.add(f"{path}.{key}", f"unknown field; allowed: {', '.join(sorted(QUERY_KEYS))}")
    measurement = q.get("measurement")
    if not isinstance(measurement, str) or not measurement:
        errs.add(f"{path}.measurement", "required: the measurement to read (e.g. payments, resource_stats)")
        measurement = ""
    field_name = q.get("field")
    ratio = None
    if "ratio" in q:
        r = _mapping(q["ratio"], f"{path}.ratio", errs)
        if r is not None:
            num = _str_list(r.get("numerator"), f"{path}.ratio.numerator", errs)
            den = _str_list(r.get("denominator"), f"{path}.ratio.denominator", errs)
            if not num:
                errs.add(f"{path}.ratio.numerator", "required: one or more fields summed above the line")
            if not den:
                errs.add(f"{path}.ratio.denominator", "required: one or more fields summed below the line")
            ratio = Ratio(num, den)
        if field_name is not None:
            errs.add(f"{path}.field", "give either field or ratio, not both")
    elif not isinstance(field_name, str) or not field_name:
        errs.add(f"{path}.field", "required (or a ratio with numerator and denominator)")
        field_name = None
    aggregate = _choice(q, "aggregate", path, errs, AGGREGATES, "sum")
    window = _duration(q, "window", path, errs, timedelta(minutes=1))
    if window <= timedelta(0):
        errs.add(f"{path}.window", "must be > 0 (e.g. 1m)")
    function = _choice(q, "function", path, errs, FUNCTIONS, "value")
    bucket = _duration(q, "bucket", path, errs, timedelta(0)) if "bucket" in q else None
    if function == "delta":
        if bucket is None or bucket <= timedelta(0):
            errs.add(f"{path}.bucket", "required with function: delta (e.g. 10s), > 0")
        elif bucket * 2 > window:
            errs.add(f"{path}.bucket", "must be at most half the window with function: delta")
    return MetricQuery(
        measurement=measurement,
        field=field_name if ratio is None else None,
        ratio=ratio,
        aggregate=aggregate,
        window=window,
        where=_str_map(q, "where", path, errs),
        group_by=_str_list(q.get("group_by"), f"{path}.group_by", errs),
        function=function,
        bucket=bucket,
    )


def parse_rule(raw: Any, path: str = "rule", errs: _Errors | None = None) -> AlertRule | None:
    own = errs is None
    errs = errs or _Errors()
    r = _mapping(raw, path, errs)
    if r is None:
        if own:
            raise AlertConfigError(errs.items)
        return None
    for key in r:
        if key not in RULE_KEYS:
            errs.add(f"{path}.{key}", f"unknown field; allowed: {', '.join(sorted(RULE_KEYS))}")
    name = _name(r, path, errs, "required: a unique rule name (becomes the alertname label)")
    kind = _choice(r, "kind", path, errs, KINDS, "metric")
    query = None
    if kind == "metric":
        if "query" not in r:
            errs.add(
                f"{path}.query", "required for kind metric: measurement, field or ratio, aggregate, window"
            )
        else:
            query = _parse_query(r["query"], f"{path}.query", errs)
    op = _choice(r, "op", path, errs, OPS, ">")
    threshold = r.get("threshold", 0.0 if kind == "heartbeat" else None)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        errs.add(f"{path}.threshold", f"required: a number, got {threshold!r}")
        threshold = 0.0
    labels = _str_map(r, "labels", path, errs)
    for reserved in ("alertname", "severity"):
        if reserved in labels:
            errs.add(f"{path}.labels.{reserved}", f"{reserved} is set from the rule; remove it from labels")
    annotations = _str_map(r, "annotations", path, errs)
    enabled = r.get("enabled", True)
    if not isinstance(enabled, bool):
        errs.add(f"{path}.enabled", "must be true or false")
        enabled = True
    on_breaker_state = r.get("on_breaker_state")
    if on_breaker_state is not None and on_breaker_state not in BREAKER_STATES:
        errs.add(f"{path}.on_breaker_state", f"must be one of {', '.join(BREAKER_STATES)}")
        on_breaker_state = None
    rule = AlertRule(
        name=str(name),
        kind=kind,
        query=query,
        op=op,
        threshold=float(threshold),
        for_=_duration(r, "for", path, errs, timedelta(0)),
        keep_firing_for=_duration(r, "keep_firing_for", path, errs, timedelta(0)),
        severity=_choice(r, "severity", path, errs, SEVERITIES, "warning"),
        labels=labels,
        annotations=annotations,
        no_data=_choice(r, "no_data", path, errs, POLICIES, "normal"),
        on_error=_choice(r, "on_error", path, errs, POLICIES, "keep_last"),
        enabled=enabled,
        on_breaker_state=on_breaker_state,
    )
    if own and errs.items:
        raise AlertConfigError(errs.items)
    return rule


def _parse_route(raw: Any, errs: _Errors) -> Route | None:
    r = _mapping(raw, "route", errs)
    if r is None:
        return None
    default = Route()
    return Route(
        receiver=str(r.get("receiver", default.receiver)),
        group_by=_str_list(r.get("group_by", list(default.group_by)), "route.group_by", errs),
        group_wait=_duration(r, "group_wait", "route", errs, default.group_wait),
        group_interval=_duration(r, "group_interval", "route", errs, default.group_interval),
        repeat_interval=_duration(r, "repeat_interval", "route", errs, default.repeat_interval),
    )


def _name(m: Mapping[str, Any], path: str, errs: _Errors, message: str = "required") -> str:
    """The ``name`` of a section item; a missing or blank one is reported at ``path.name``."""
    name = m.get("name")
    if not isinstance(name, str) or not name.strip():
        errs.add(f"{path}.name", message)
        return ""
    return name


def _parse_channel(raw: Any, path: str, errs: _Errors) -> Channel | None:
    c = _mapping(raw, path, errs)
    if c is None:
        return None
    name = _name(c, path, errs, "required: the channel name escalation steps refer to")
    kind = _choice(c, "kind", path, errs, CHANNEL_KINDS, "log")
    config = {k: v for k, v in c.items() if k not in ("name", "kind")}
    if kind == "webhook" and not str(config.get("url", "")).startswith(("http://", "https://")):
        errs.add(f"{path}.url", "required for a webhook: an http:// or https:// URL")
    if kind == "email":
        if not str(config.get("smtp_url", "")).startswith(("smtp://", "smtps://")):
            errs.add(f"{path}.smtp_url", "required for email: smtp://host:port")
        if "to" in config:
            config["to"] = list(_str_list(config["to"], f"{path}.to", errs))
    return Channel(name, kind, config)


def _parse_policy(raw: Any, path: str, errs: _Errors) -> EscalationPolicy | None:
    p = _mapping(raw, path, errs)
    if p is None:
        return None
    name = _name(p, path, errs)
    steps = []
    raw_steps = p.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        errs.add(
            f"{path}.steps", "required: a non-empty list of {channels: [...], wait: 5m, oncall: rotation}"
        )
        raw_steps = []
    for i, s in enumerate(raw_steps):
        sp = f"{path}.steps[{i}]"
        sm = _mapping(s, sp, errs)
        if sm is None:
            continue
        channels = _str_list(sm.get("channels"), f"{sp}.channels", errs)
        oncall = sm.get("oncall")
        if not channels:
            errs.add(f"{sp}.channels", "required: one or more channel names")
        wait = _duration(sm, "wait", sp, errs, timedelta(0))
        if i > 0 and wait <= timedelta(0):
            errs.add(f"{sp}.wait", "must be > 0 for every step after the first (e.g. 5m)")
        steps.append(EscalationStep(channels, wait, str(oncall) if oncall else None))
    return EscalationPolicy(name, tuple(steps))


def _parse_rotation(raw: Any, path: str, errs: _Errors) -> Rotation | None:
    r = _mapping(raw, path, errs)
    if r is None:
        return None
    name = _name(r, path, errs)
    members = []
    raw_members = r.get("members")
    if not isinstance(raw_members, list) or not raw_members:
        errs.add(f"{path}.members", "required: a non-empty list of names or {name, email}")
        raw_members = []
    for i, m in enumerate(raw_members):
        if isinstance(m, str):
            members.append(Member(m))
        elif isinstance(m, Mapping) and isinstance(m.get("name"), str):
            members.append(Member(m["name"], m.get("email")))
        else:
            errs.add(f"{path}.members[{i}]", "must be a name or {name: ..., email: ...}")
    start = _time(r.get("start"), f"{path}.start", errs)
    shift = _duration(r, "shift", path, errs, timedelta(weeks=1))
    if shift <= timedelta(0):
        errs.add(f"{path}.shift", "must be > 0 (default 1w)")
        shift = timedelta(weeks=1)
    overrides = []
    for i, o in enumerate(r.get("overrides") or []):
        op = f"{path}.overrides[{i}]"
        om = _mapping(o, op, errs)
        if om is None:
            continue
        s, e = _time(om.get("start"), f"{op}.start", errs), _time(om.get("end"), f"{op}.end", errs)
        if not isinstance(om.get("who"), str):
            errs.add(f"{op}.who", "required: who is on call instead")
        if s and e and e <= s:
            errs.add(f"{op}.end", "must be after start")
        if s and e and isinstance(om.get("who"), str):
            overrides.append(Override(om["who"], s, e))
    return Rotation(
        name, tuple(members), start or datetime(1970, 1, 1, tzinfo=UTC), shift, tuple(overrides)
    )


def _named_section(doc: Mapping[str, Any], key: str, parse: Any, errs: _Errors) -> tuple:
    """Parse the list under ``key`` item by item (``parse(raw, path, errs)``; invalid items are left
    out and reported) and check that the names are unique."""
    items = tuple(
        item for i, raw in enumerate(doc[key] or []) if (item := parse(raw, f"{key}[{i}]", errs))
    )
    _unique(items, key, errs)
    return items


def _unique(items: tuple, section: str, errs: _Errors) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.name in seen:
            errs.add(f"{section}[{i}].name", f"duplicate name {item.name!r}; names must be unique")
        seen.add(item.name)


def parse_document(raw: Any) -> AlertConfig:
    """Validate a whole alert document; raise ``AlertConfigError`` listing every error."""
    errs = _Errors()
    if raw is None:
        raw = {}
    if isinstance(raw, list):  # a bare list of rules
        raw = {"rules": raw}
    doc = _mapping(raw, "document", errs)
    if doc is None:
        raise AlertConfigError(errs.items)
    for key in doc:
        if key not in SECTIONS:
            errs.add(str(key), f"unknown section; allowed: {', '.join(SECTIONS)}")
    rules = inhibit = channels = policies = rotations = None
    route = None
    if "rules" in doc:
        raw_rules = doc["rules"] or []
        if not isinstance(raw_rules, list):
            errs.add("rules", "must be a list of rules")
            raw_rules = []
        parsed = [parse_rule(r, f"rules[{i}]", errs) for i, r in enumerate(raw_rules)]
        rules = tuple(r for r in parsed if r is not None)
        _unique(rules, "rules", errs)
    if "inhibit_rules" in doc:
        out = []
        for i, ir in enumerate(doc["inhibit_rules"] or []):
            m = _mapping(ir, f"inhibit_rules[{i}]", errs)
            if m is None:
                continue
            src = _matchers(m.get("source"), f"inhibit_rules[{i}].source", errs)
            if not src:
                errs.add(f"inhibit_rules[{i}].source", "required: matchers of the inhibiting alert")
            out.append(
                InhibitRule(
                    src,
                    _matchers(m.get("target"), f"inhibit_rules[{i}].target", errs),
                    _str_list(m.get("equal"), f"inhibit_rules[{i}].equal", errs),
                )
            )
        inhibit = tuple(out)
    if "route" in doc:
        route = _parse_route(doc["route"], errs)
    if "channels" in doc:
        channels = _named_section(doc, "channels", _parse_channel, errs)
    if "escalation_policies" in doc:
        policies = _named_section(doc, "escalation_policies", _parse_policy, errs)
    if "rotations" in doc:
        rotations = _named_section(doc, "rotations", _parse_rotation, errs)
    if errs.items:
        raise AlertConfigError(errs.items)
    return AlertConfig(rules, inhibit, route, channels, policies, rotations)


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
