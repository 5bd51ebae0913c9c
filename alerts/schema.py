"""The alert document, defined once: pydantic models with field descriptions, bounds and defaults.

A document is a mapping with any of the sections ``rules``, ``inhibit_rules``, ``route``,
``channels``, ``escalation_policies``, ``rotations``. :func:`validate_document` turns one into the
runtime values of ``alerts.model`` (frozen dataclasses the evaluator uses, parsed once per apply);
:func:`json_schema` is what ``tradeguard alerts rules schema`` prints for editors and CI.

Every error is a ``(field path, message)`` pair of ``AlertConfigError``: the path is dotted with list
indexes (``rules[2].query.aggregate``), the message says what is wrong and what is allowed.

Channel credentials are never written in a document: a password, a token, an ``Authorization``
header, a URL with user:password or a secret query parameter must be a ``${ENV_NAME}`` reference,
resolved when a notification is sent (``alerts.notify``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

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
)
from alerts.proposal import ProposalDoc
from collectors.points import BREAKER_STATES
from collectors.query import AGGREGATES
from common.durations import DURATION_PATTERN, parse_duration
from common.redact import SECRET_NAME, env_refs, expand_env_refs

SECTIONS = ("rules", "inhibit_rules", "route", "channels", "escalation_policies", "rotations")
# Names of config keys, headers and query parameters whose value is a credential.


# ------------------------------------------------------------------ errors at a sub-field
def _fail(field: str, message: str) -> PydanticCustomError:
    """An error at ``field`` below the validated value (``"bucket"``, ``"steps[1].wait"``, ``"[3].name"``)."""
    return PydanticCustomError("field_error", "{message}", {"field": field, "message": message})


# ------------------------------------------------------------------ scalar types
def _scalar(check: Callable[[Any], Any], schema: dict[str, Any]) -> Any:
    """A type validated by ``check`` (its ``ValueError`` is the message) with its own JSON Schema."""
    return Annotated[Any, PlainValidator(check), WithJsonSchema(schema)]


_DURATION_SCHEMA = {
    "anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, {"type": "number", "minimum": 0}],
    "examples": ["30s", "5m", "1h30m", "7d"],
}


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be > 0 (e.g. 1m)")
    return value


def _opt_duration(value: Any) -> timedelta | None:
    return None if value is None else parse_duration(value)


Duration = _scalar(parse_duration, _DURATION_SCHEMA)
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
OptDuration = _scalar(_opt_duration, {"anyOf": [_DURATION_SCHEMA, {"type": "null"}]})


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-blank name, got {value!r}")
    return value


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    return value


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of names, got {value!r}")
    return tuple(value)


def _str_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping of name: value, got {type(value).__name__}")
    out = {}
    for k, v in value.items():
        if isinstance(v, Mapping | list):
            raise _fail(str(k), "must be a string")
        out[str(k)] = str(v)
    return out


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"must be a number of seconds > 0, got {value!r}")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    raise ValueError(f"must be an ISO 8601 time such as 2026-11-23T09:00:00Z, got {value!r}")


def _matchers(value: Any) -> tuple[Matcher, ...]:
    """A mapping ``{label: value}`` (equality) or a list of ``label=value`` strings."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(Matcher(str(k), str(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        out = []
        for i, text in enumerate(value):
            try:
                out.append(Matcher.parse(str(text)))
            except ValueError as exc:
                raise _fail(f"[{i}]", str(exc)) from exc
        return tuple(out)
    raise ValueError("must be a mapping label: value or a list of 'label=value' matchers")


def _member(value: Any) -> Member:
    if isinstance(value, str) and value.strip():
        return Member(value)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str) and set(value) <= {"name", "email"}:
        email = value.get("email")
        return Member(value["name"], None if email is None else str(email))
    raise ValueError("must be a name or {name: ..., email: ...}")


def _choice(values: tuple[str, ...] | list[str], *, nullable: bool = False) -> Any:
    allowed = tuple(values)

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    schema: dict[str, Any] = {"type": "string", "enum": list(allowed)}
    return _scalar(check, {"anyOf": [schema, {"type": "null"}]} if nullable else schema)


Name = _scalar(_name, {"type": "string", "minLength": 1, "pattern": r"\S"})
OptStr = _scalar(_opt_str, {"type": ["string", "null"]})
Names = _scalar(_names, {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
StrMap = _scalar(
    _str_map, {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
)
Number = _scalar(_number, {"type": "number"})
Seconds = _scalar(_seconds, {"type": ["number", "null"], "exclusiveMinimum": 0})
Bool = _scalar(_bool, {"type": "boolean"})
Time = _scalar(_time, {"type": "string", "format": "date-time", "examples": ["2026-11-23T09:00:00Z"]})
_MATCHER_PATTERN = r"^\s*[A-Za-z_][A-Za-z0-9_.]*\s*(=~|!~|!=|=)"
Matchers = _scalar(
    _matchers,
    {
        "anyOf": [
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "array", "items": {"type": "string", "pattern": _MATCHER_PATTERN}},
        ],
        "description": "{label: value} (equality) or a list of label=value, label!=value, "
        "label=~regex, label!~regex",
    },
)
MemberT = _scalar(
    _member,
    {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "object",
                "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": False,
            },
        ]
    },
)


Aggregate = _choice(AGGREGATES)
Function = _choice(FUNCTIONS)
Kind = _choice(KINDS)
Op = _choice(OPS)
Severity = _choice(SEVERITIES)
Policy = _choice(POLICIES)
BreakerState = _choice(list(BREAKER_STATES), nullable=True)
ChannelKind = _choice(CHANNEL_KINDS)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ rules
class RatioDoc(_Doc):
    """``sum(numerator fields) / sum(denominator fields)``, each aggregated over the window."""

    numerator: Names = Field(description="one or more fields summed above the line")
    denominator: Names = Field(description="one or more fields summed below the line")

    @field_validator("numerator", "denominator")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...], info: Any) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"required: {cls.model_fields[info.field_name].description}")
        return value


class QueryDoc(_Doc):
    """What a metric rule reads from the metric store (collectors/points.py SCHEMA)."""

    measurement: Name = Field(description="the measurement to read (e.g. payments, resource_stats)")
    field: OptStr = Field(None, description="the field to aggregate; give either field or ratio")
    ratio: RatioDoc | None = Field(None, description="a ratio of summed fields instead of one field")
    aggregate: Aggregate = Field("sum", description="how the window's points are aggregated")
    window: PositiveDuration = Field("1m", validate_default=True, description="how far back to read, > 0")
    where: StrMap = Field(default_factory=dict, description="tag filters, tag: value")
    group_by: Names = Field((), description="tags giving one series (one alert) per value")
    function: Function = Field(
        "value", description="value: the aggregate itself; delta: last bucket minus first bucket"
    )
    bucket: OptDuration = Field(
        None, description="bucket width for function: delta (at most half the window)"
    )

    @model_validator(mode="after")
    def _shape(self) -> QueryDoc:
        if self.ratio is not None and self.field is not None:
            raise _fail("field", "give either field or ratio, not both")
        if self.ratio is None and not self.field:
            raise _fail("field", "required (or a ratio with numerator and denominator)")
        if self.function == "delta":
            if self.bucket is None or self.bucket <= timedelta(0):
                raise _fail("bucket", "required with function: delta (e.g. 10s), > 0")
            if self.bucket * 2 > self.window:
                raise _fail("bucket", "must be at most half the window with function: delta")
        return self

    def to_query(self) -> MetricQuery:
        return MetricQuery(
            measurement=self.measurement,
            field=self.field if self.ratio is None else None,
            ratio=Ratio(self.ratio.numerator, self.ratio.denominator) if self.ratio is not None else None,
            aggregate=self.aggregate,
            window=self.window,
            where=dict(self.where),
            group_by=self.group_by,
            function=self.function,
            bucket=self.bucket,
        )


class RuleDoc(_Doc):
    """One alert rule: an alert per series whose value meets ``op threshold`` for ``for``."""

    name: Name = Field(description="a unique rule name (becomes the alertname label)")
    kind: Kind = Field(
        "metric", description="metric: a query; heartbeat: seconds since a node's last heartbeat"
    )
    query: QueryDoc | None = Field(None, description="required for kind metric")
    op: Op = Field(">", description="how the value is compared with the threshold")
    threshold: Number = Field(description="a number: the value is compared with it by op")
    for_: Duration = Field(
        "0s", alias="for", validate_default=True, description="how long the condition holds before firing"
    )
    keep_firing_for: Duration = Field(
        "0s", validate_default=True, description="how long an alert keeps firing after the condition clears"
    )
    severity: Severity = Field("warning", description="the severity label")
    labels: StrMap = Field(default_factory=dict, description="extra labels (not alertname nor severity)")
    annotations: StrMap = Field(
        default_factory=dict,
        description="texts such as summary, runbook_url; may use {label}, {value}, {threshold}",
    )
    no_data: Policy = Field("normal", description="the state when the query returns nothing")
    on_error: Policy = Field("keep_last", description="the state when the query fails")
    enabled: Bool = Field(True, description="false keeps the rule but stops evaluating it")
    on_breaker_state: BreakerState = Field(
        None, description="raise at once on a breaker event entering this state"
    )
    proposal: ProposalDoc | None = Field(
        None, description="a guardian rule change on-call may apply in one click (alerts/proposal.py)"
    )

    @field_validator("labels")
    @classmethod
    def _reserved(cls, labels: dict[str, str]) -> dict[str, str]:
        for reserved in ("alertname", "severity"):
            if reserved in labels:
                raise _fail(reserved, f"{reserved} is set from the rule; remove it from labels")
        return labels

    @model_validator(mode="after")
    def _query_for_metric(self) -> RuleDoc:
        if self.kind == "metric" and self.query is None:
            raise _fail("query", "required for kind metric: measurement, field or ratio, aggregate, window")
        return self

    def to_rule(self) -> AlertRule:
        return AlertRule(
            name=self.name,
            kind=self.kind,
            query=self.query.to_query() if self.kind == "metric" and self.query is not None else None,
            op=self.op,
            threshold=self.threshold,
            for_=self.for_,
            keep_firing_for=self.keep_firing_for,
            severity=self.severity,
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            no_data=self.no_data,
            on_error=self.on_error,
            enabled=self.enabled,
            on_breaker_state=self.on_breaker_state,
            proposal=self.proposal,
        )


# ------------------------------------------------------------------ routing and inhibition
class InhibitDoc(_Doc):
    """While an alert matching ``source`` fires, alerts matching ``target`` with the same ``equal``
    labels are muted."""

    source: Matchers = Field(description="matchers of the inhibiting alert")
    target: Matchers = Field((), description="matchers of the muted alerts")
    equal: Names = Field((), description="labels that must have the same value in both")

    @field_validator("source")
    @classmethod
    def _non_empty(cls, value: tuple[Matcher, ...]) -> tuple[Matcher, ...]:
        if not value:
            raise ValueError("required: matchers of the inhibiting alert")
        return value

    def to_rule(self) -> InhibitRule:
        return InhibitRule(self.source, self.target, self.equal)


class RouteDoc(_Doc):
    """How firing alerts are grouped into notifications (Alertmanager's route, one level)."""

    receiver: Name = Field("default", description="the escalation policy notified")
    group_by: Names = Field(("alertname",), description="labels whose values make one group")
    group_wait: Duration = Field(
        "30s", validate_default=True, description="wait before a new group's first notification"
    )
    group_interval: Duration = Field(
        "5m", validate_default=True, description="wait before notifying a changed group"
    )
    repeat_interval: Duration = Field(
        "4h", validate_default=True, description="wait before repeating an unchanged group"
    )

    def to_route(self) -> Route:
        return Route(self.receiver, self.group_by, self.group_wait, self.group_interval, self.repeat_interval)


# ------------------------------------------------------------------ channels
_REF_HINT = "put it in an environment variable and write ${ENV_NAME}"


def _only_refs(text: str) -> bool:
    """True when ``text`` is nothing but ``${ENV}`` references."""
    names = env_refs(text)
    return bool(names) and not expand_env_refs(text, dict.fromkeys(names, "")).strip()


def _url_like(value: str | None, schemes: tuple[str, ...]) -> bool:
    """A URL of one of ``schemes``, or one starting with a ``${ENV}`` reference (``${BASE}/hook``)."""
    return bool(value) and (str(value).startswith(schemes) or str(value).startswith("${"))


def _url_problem(url: str) -> str | None:
    """What makes ``url`` hold a credential in plain text, or None."""
    if _only_refs(url):
        return None
    try:
        parts = urlsplit(url)
        password = parts.password
        username = parts.username
    except ValueError:
        return "it is not a valid URL"
    if password and not _only_refs(password):
        return "it holds a password"
    if username and not password and parts.scheme in ("http", "https") and not _only_refs(username):
        return "it holds user info"
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if SECRET_NAME.search(key) and value and not _only_refs(value):
            return f"its query parameter {key} holds a secret"
    return None


class ChannelDoc(_Doc):
    """A notification channel: ``webhook`` (url), ``email`` (smtp_url, from, to), ``log``, ``slack``
    (incoming-webhook url), ``pagerduty`` (Events API v2 routing_key, url), ``dingtalk`` (group robot
    url with access_token, signing secret) or ``wecom`` (group robot url with key).

    Credentials are ``${ENV_NAME}`` references, resolved when sending."""

    name: Name = Field(description="the channel name escalation steps refer to")
    kind: ChannelKind = Field("log", description="webhook, email, log, slack, pagerduty, dingtalk or wecom")
    url: OptStr = Field(
        None,
        description="webhook: an http(s) URL receiving Alertmanager v4 JSON; slack: the incoming-webhook "
        "URL (a secret: a ${ENV_NAME} reference); pagerduty: the Events API v2 endpoint (default "
        "https://events.pagerduty.com/v2/enqueue); dingtalk: https://oapi.dingtalk.com/robot/send?"
        "access_token=${ENV}; wecom: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${ENV}. "
        "A token in it must be a ${ENV_NAME} reference (or the whole URL one)",
    )
    headers: StrMap = Field(
        default_factory=dict, description="webhook: extra headers; credentials as ${ENV_NAME} references"
    )
    timeout_s: Seconds = Field(None, description="webhook: seconds before giving up, > 0")
    smtp_url: OptStr = Field(
        None, description="email: smtp[s]://[user:${PASSWORD_ENV}@]host:port/?from=…&to=…"
    )
    to: Names = Field((), description="email: recipients")
    from_: OptStr = Field(None, alias="from", description="email: the sender address")
    routing_key: OptStr = Field(
        None, description="pagerduty: the integration's routing key, as a ${ENV_NAME} reference"
    )
    secret: OptStr = Field(
        None, description="dingtalk: the robot's signing secret (SEC…), as a ${ENV_NAME} reference"
    )

    @model_validator(mode="after")
    def _kind_and_secrets(self) -> ChannelDoc:
        if self.kind in ("webhook", "slack", "dingtalk", "wecom") and not _url_like(
            self.url, ("http://", "https://")
        ):
            raise _fail(
                "url", f"required for {self.kind}: an http:// or https:// URL (or a ${{ENV_NAME}} reference)"
            )
        if (
            self.kind == "pagerduty"
            and self.url is not None
            and not _url_like(self.url, ("http://", "https://"))
        ):
            raise _fail(
                "url", "pagerduty: an http:// or https:// Events API v2 URL (or a ${ENV_NAME} reference)"
            )
        if self.kind == "email" and not _url_like(self.smtp_url, ("smtp://", "smtps://")):
            raise _fail("smtp_url", "required for email: smtp://host:port (or a ${ENV_NAME} reference)")
        if self.kind == "slack" and self.url and not _only_refs(self.url) and "hooks.slack.com" in self.url:
            raise _fail("url", f"a Slack incoming-webhook URL is itself a secret; {_REF_HINT}")
        if self.kind == "pagerduty" and not (self.routing_key and _only_refs(self.routing_key)):
            raise _fail("routing_key", f"required for pagerduty, and a secret; {_REF_HINT}")
        if self.secret is not None and not _only_refs(self.secret):
            raise _fail("secret", f"must not hold a credential in plain text; {_REF_HINT}")
        for key in ("url", "smtp_url"):
            value = getattr(self, key)
            problem = _url_problem(value) if value else None
            if problem:
                raise _fail(key, f"must not hold a credential in plain text ({problem}); {_REF_HINT}")
        for header, value in self.headers.items():
            if SECRET_NAME.search(header) and not env_refs(value):
                raise _fail(
                    f"headers.{header}",
                    f"must not hold a credential in plain text; {_REF_HINT} (e.g. Bearer ${{WEBHOOK_TOKEN}})",
                )
        return self

    def to_channel(self) -> Channel:
        config = self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"name", "kind"})
        return Channel(self.name, self.kind, {k: v for k, v in config.items() if v is not None})


# ------------------------------------------------------------------ escalation and on-call
class StepDoc(_Doc):
    channels: Names = Field(description="one or more channel names")
    wait: Duration = Field(
        "0s",
        validate_default=True,
        description="after the previous step, while unacknowledged (> 0 after the first)",
    )
    oncall: OptStr = Field(None, description="a rotation: also notify whoever is on call (e-mail)")

    @field_validator("channels")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("required: one or more channel names")
        return value


class PolicyDoc(_Doc):
    """Steps notified in turn while an alert stays unacknowledged."""

    name: Name = Field(description="the name the route's receiver refers to")
    steps: list[StepDoc] = Field(
        description="a non-empty list of {channels: [...], wait: 5m, oncall: rotation}"
    )

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[StepDoc]) -> list[StepDoc]:
        if not steps:
            raise ValueError("required: a non-empty list of {channels: [...], wait: 5m, oncall: rotation}")
        for i, step in enumerate(steps):
            if i > 0 and step.wait <= timedelta(0):
                raise _fail(f"[{i}].wait", "must be > 0 for every step after the first (e.g. 5m)")
        return steps

    def to_policy(self) -> EscalationPolicy:
        return EscalationPolicy(
            self.name, tuple(EscalationStep(s.channels, s.wait, s.oncall or None) for s in self.steps)
        )


class OverrideDoc(_Doc):
    who: Name = Field(description="who is on call instead")
    start: Time = Field(description="ISO 8601 start")
    end: Time = Field(description="ISO 8601 end, after start")

    @model_validator(mode="after")
    def _order(self) -> OverrideDoc:
        if self.end <= self.start:
            raise _fail("end", "must be after start")
        return self


class RotationDoc(_Doc):
    """Members take shifts in turn from ``start``; an override covering the instant wins."""

    name: Name = Field(description="the name escalation steps refer to (oncall)")
    members: list[MemberT] = Field(description="a non-empty list of names or {name, email}")
    start: Time = Field(description="when the first member's first shift begins (ISO 8601)")
    shift: PositiveDuration = Field("1w", validate_default=True, description="shift length, > 0")
    overrides: list[OverrideDoc] = Field(default_factory=list, description="{who, start, end}")

    @field_validator("members")
    @classmethod
    def _non_empty(cls, value: list[Member]) -> list[Member]:
        if not value:
            raise ValueError("required: a non-empty list of names or {name, email}")
        return value

    def to_rotation(self) -> Rotation:
        return Rotation(
            self.name,
            tuple(self.members),
            self.start,
            self.shift,
            tuple(Override(o.who, o.start, o.end) for o in self.overrides),
        )


# ------------------------------------------------------------------ the document
def _unique(items: list[Any] | None) -> list[Any] | None:
    seen: set[str] = set()
    for i, item in enumerate(items or ()):
        if item.name in seen:
            raise _fail(f"[{i}].name", f"duplicate name {item.name!r}; names must be unique")
        seen.add(item.name)
    return items


class AlertDocument(_Doc):
    """An alert rule file (YAML or JSON): apply with ``tradeguard alerts rules apply -f FILE``."""

    model_config = ConfigDict(
        extra="forbid",
        title="tradeguard alert document",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    rules: list[RuleDoc] | None = Field(None, description="alert rules, upserted by name")
    inhibit_rules: list[InhibitDoc] | None = Field(None, description="alerts muting other alerts")
    route: RouteDoc | None = Field(None, description="grouping of notifications")
    channels: list[ChannelDoc] | None = Field(None, description="notification channels")
    escalation_policies: list[PolicyDoc] | None = Field(None, description="steps notified in turn")
    rotations: list[RotationDoc] | None = Field(None, description="on-call rotations")

    @field_validator("rules", "channels", "escalation_policies", "rotations")
    @classmethod
    def _unique_names(cls, items: list[Any] | None) -> list[Any] | None:
        return _unique(items)

    def to_config(self) -> AlertConfig:
        given = self.model_fields_set

        def section(name: str, convert: Callable[[Any], Any]) -> tuple | None:
            return tuple(convert(x) for x in getattr(self, name) or ()) if name in given else None

        return AlertConfig(
            rules=section("rules", RuleDoc.to_rule),
            inhibit_rules=section("inhibit_rules", InhibitDoc.to_rule),
            route=(self.route or RouteDoc()).to_route() if "route" in given else None,
            channels=section("channels", ChannelDoc.to_channel),
            escalation_policies=section("escalation_policies", PolicyDoc.to_policy),
            rotations=section("rotations", RotationDoc.to_rotation),
        )


# ------------------------------------------------------------------ entry points
def validate_document(raw: Any) -> AlertConfig:
    """Validate a whole alert document; raise ``AlertConfigError`` listing every error."""
    if raw is None:
        raw = {}
    if isinstance(raw, list):  # a bare list of rules
        raw = {"rules": raw}
    if not isinstance(raw, Mapping):
        raise AlertConfigError([("document", f"must be a mapping, got {type(raw).__name__}")])
    try:
        return AlertDocument.model_validate(dict(raw)).to_config()
    except ValidationError as exc:
        raise AlertConfigError(errors_of(exc, AlertDocument, "")) from None


def validate_rule(raw: Any, path: str = "rule") -> AlertRule:
    """One rule document; errors are reported below ``path``."""
    if not isinstance(raw, Mapping):
        raise AlertConfigError([(path, f"must be a mapping, got {type(raw).__name__}")])
    try:
        return RuleDoc.model_validate(dict(raw)).to_rule()
    except ValidationError as exc:
        raise AlertConfigError(errors_of(exc, RuleDoc, path)) from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an alert document."""
    return AlertDocument.model_json_schema(by_alias=True)


# ------------------------------------------------------------------ pydantic errors → (path, message)
def _path(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _join(path: str, field: str) -> str:
    if not path:
        return field
    return path + field if field.startswith("[") else f"{path}.{field}"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (list, tuple, Union, UnionType) or get_args(annotation):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return []


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model holding the last field of ``loc`` and that field's info (None where unknown)."""
    names = [part for part in loc if not isinstance(part, int)]
    model: type[BaseModel] | None = root
    for part in names[:-1]:
        info = _fields(model).get(part) if model is not None else None
        found = _models_in(info.annotation) if info is not None else []
        model = found[0] if found else None
    if model is None or not names:
        return model, None
    return model, _fields(model).get(names[-1])


def errors_of(exc: ValidationError, root: type[BaseModel], prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in exc.errors(include_url=False):
        loc, kind, ctx = tuple(e["loc"]), e["type"], e.get("ctx") or {}
        path = _path(prefix, loc) or prefix or "document"
        if kind == "field_error":
            out.append((_join(path, str(ctx["field"])), str(ctx["message"])))
        elif kind == "value_error":
            out.append((path, str(ctx.get("error", e["msg"]))))
        elif kind == "missing":
            _, info = _walk(root, loc)
            desc = info.description if info is not None else None
            out.append((path, f"required: {desc}" if desc else "required"))
        elif kind == "extra_forbidden":
            holder, _ = _walk(root, loc)
            allowed = ", ".join(sorted(_fields(holder))) if holder is not None else ""
            if holder is AlertDocument and len(loc) == 1:
                out.append((path, f"unknown section; allowed: {', '.join(SECTIONS)}"))
            else:
                out.append((path, f"unknown field; allowed: {allowed}"))
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            out.append((path, f"must be a mapping, got {type(e['input']).__name__}"))
        elif kind in ("list_type", "tuple_type"):
            out.append((path, f"must be a list, got {type(e['input']).__name__}"))
        else:
            out.append((path, str(e["msg"])))
    return out
