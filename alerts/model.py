"""Values of the alerting domain: rules, alert instances, silences, routing, escalation, on-call.

Everything here is a frozen dataclass or a small pure function; storage lives in
``alerts.store``, the document schema in ``alerts.schema`` (loaded and dumped by ``alerts.rulefile``).
Durations are read and written by ``common.durations``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from alerts.format import drop_written_units, unit_of, value_text

if TYPE_CHECKING:
    from alerts.proposal import ProposalDoc

Op = Literal[">", ">=", "<", "<=", "==", "!="]
OPS: tuple[str, ...] = (">", ">=", "<", "<=", "==", "!=")
Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
NoDataPolicy = Literal["alerting", "normal", "keep_last"]
POLICIES: tuple[str, ...] = ("alerting", "normal", "keep_last")
RuleKind = Literal["metric", "heartbeat"]  # heartbeat: value = seconds since a node's last beat
KINDS: tuple[str, ...] = ("metric", "heartbeat")
Function = Literal["value", "delta"]
FUNCTIONS: tuple[str, ...] = ("value", "delta")

# Alert instance states: an alert row is pending or firing while open; it ends resolved (it
# fired) or inactive (it was pending and the condition cleared before ``for`` elapsed).
PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"
INACTIVE = "inactive"
STATES: tuple[str, ...] = (PENDING, FIRING, RESOLVED, INACTIVE)

def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable hash of a label set: the identity of one alert across evaluations."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def compare(op: str, value: float, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    if op == "!=":
        return value != threshold
    raise ValueError(f"op must be one of {', '.join(OPS)}, got {op!r}")


@dataclass(frozen=True)
class Ratio:
    """``sum(numerator fields) / sum(denominator fields)``, each aggregated over the window."""

    numerator: tuple[str, ...]
    denominator: tuple[str, ...]


@dataclass(frozen=True)
class MetricQuery:
    """What a metric rule reads from the metric store.

    Exactly one of ``field`` and ``ratio``. ``function: delta`` compares the growth
    over the window (last bucket minus first bucket, buckets of ``bucket``) instead of
    the aggregate itself ("outbox backlog growing").
    """

    measurement: str
    field: str | None = None
    ratio: Ratio | None = None
    aggregate: str = "sum"
    window: timedelta = timedelta(minutes=1)
    where: Mapping[str, str] = dc_field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    function: str = "value"
    bucket: timedelta | None = None

    def fields(self) -> tuple[str, ...]:
        if self.ratio is not None:
            return tuple(dict.fromkeys((*self.ratio.numerator, *self.ratio.denominator)))
        return (self.field,) if self.field else ()


@dataclass(frozen=True)
class AlertRule:
    name: str
    kind: str = "metric"
    query: MetricQuery | None = None
    op: str = ">"
    threshold: float = 0.0
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    severity: str = "warning"
    labels: Mapping[str, str] = dc_field(default_factory=dict)
    annotations: Mapping[str, str] = dc_field(default_factory=dict)
    no_data: str = "normal"
    on_error: str = "keep_last"
    enabled: bool = True
    # breaker rules: raise at once on a BreakerStateChanged event with this state
    on_breaker_state: str | None = None
    # a guardian rule change on-call may apply in one click (alerts/proposal.py, alerts/proposal_apply.py)
    proposal: ProposalDoc | None = None

    def base_labels(self) -> dict[str, str]:
        return {
            **{k: str(v) for k, v in self.labels.items()},
            "alertname": self.name,
            "severity": self.severity,
        }

    def render_annotations(self, labels: Mapping[str, str], value: float | None) -> dict[str, str]:
        """Annotations with ``{label}`` / ``{value}`` / ``{threshold}`` placeholders filled in; the
        value and threshold rounded with the rule's unit (``alerts.format``: ``39.2 %``, ``812 ms``)."""
        unit = unit_of(self)
        values = _Default(labels)
        values["value"] = value_text(value, unit)
        values["threshold"] = value_text(self.threshold, unit)
        out = {}
        for key, text in self.annotations.items():
            try:
                out[key] = drop_written_units(str(text), unit).format_map(values)
            except (ValueError, IndexError):
                out[key] = str(text)
        return out


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class Matcher:
    """``name = value`` (``=``), ``!=``, ``=~`` (regex, full match) or ``!~``."""

    name: str
    value: str
    op: str = "="

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        if self.op == "=~":
            return re.fullmatch(self.value, actual) is not None
        if self.op == "!~":
            return re.fullmatch(self.value, actual) is None
        raise ValueError(f"matcher op must be one of =, !=, =~, !~, got {self.op!r}")

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"

    @staticmethod
    def parse(text: str) -> Matcher:
        """``label=value``, ``label!=value``, ``label=~regex``, ``label!~regex``."""
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", text)
        if not m:
            raise ValueError(f"a matcher looks like label=value (or !=, =~, !~), got {text!r}")
        value = m.group(3)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return Matcher(m.group(1), value, m.group(2))


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True)
class Silence:
    id: int | None
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    expired_by: str | None = None

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def silences(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active(now) and matches_all(self.matchers, labels)


@dataclass(frozen=True)
class InhibitRule:
    """While an alert matching ``source`` fires, alerts matching ``target`` whose ``equal``
    labels have the same values are inhibited (e.g. a node down mutes that node's resource alerts)."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """How firing alerts are grouped into notifications (Alertmanager's route, one level)."""

    receiver: str = "default"  # an escalation policy name
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)


@dataclass(frozen=True)
class Channel:
    """A notification channel: ``webhook`` (url), ``email`` (smtp_url, from, to), ``log``, ``slack``
    (url), ``pagerduty`` (routing_key, url), ``dingtalk`` (url, secret) or ``wecom`` (url)."""

    name: str
    kind: str
    config: Mapping[str, object] = dc_field(default_factory=dict)


CHANNEL_KINDS: tuple[str, ...] = ("webhook", "email", "log", "slack", "pagerduty", "dingtalk", "wecom")


@dataclass(frozen=True)
class EscalationStep:
    channels: tuple[str, ...]
    wait: timedelta = timedelta(0)  # after the previous step, while unacknowledged
    oncall: str | None = None  # a rotation name: also notify whoever is on call (email)


@dataclass(frozen=True)
class EscalationPolicy:
    name: str
    steps: tuple[EscalationStep, ...]


@dataclass(frozen=True)
class Member:
    name: str
    email: str | None = None


@dataclass(frozen=True)
class Override:
    who: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Rotation:
    """Members take shifts in turn from ``start`` (each ``shift`` long, a week by default);
    an override covering the instant wins."""

    name: str
    members: tuple[Member, ...]
    start: datetime
    shift: timedelta = timedelta(weeks=1)
    overrides: tuple[Override, ...] = ()

    def on_call(self, now: datetime) -> Member | None:
        for ov in reversed(self.overrides):  # the latest override wins
            if ov.start <= now < ov.end:
                return self.member(ov.who)
        if not self.members or now < self.start:
            return None
        index = int((now - self.start) // self.shift) % len(self.members)
        return self.members[index]

    def shift_bounds(self, now: datetime) -> tuple[datetime, datetime] | None:
        if now < self.start:
            return None
        n = int((now - self.start) // self.shift)
        begin = self.start + n * self.shift
        return begin, begin + self.shift

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        return Member(name)


@dataclass(frozen=True)
class AlertConfig:
    """Everything an alert document may hold; sections absent from a document are None."""

    rules: tuple[AlertRule, ...] | None = None
    inhibit_rules: tuple[InhibitRule, ...] | None = None
    route: Route | None = None
    channels: tuple[Channel, ...] | None = None
    escalation_policies: tuple[EscalationPolicy, ...] | None = None
    rotations: tuple[Rotation, ...] | None = None
