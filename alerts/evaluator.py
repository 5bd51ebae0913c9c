"""Evaluate every alert rule against the metric store, each cycle.

Rules that share a query shape (measurement, aggregate, window, bucket, group-by
labels and the *names* of their tag filters) are answered by ONE query: the tag
filters become extra group-by labels and each rule picks its rows. A thousand rules
over a few dozen resources cost a handful of queries.

One failing rule (or one failing batch query) never stops the others: the failure
is logged, counted and handled by each affected rule's ``on_error`` policy.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from alerts.model import FIRING, RESOLVED, AlertRule, compare
from alerts.rulefile import parse_rule
from alerts.state import AlertStates, Series, Transition
from alerts.store import AlertStore
from collectors.points import BREAKER_STATES
from collectors.query import MetricStore, Query, Row
from common.clock import Clock, SystemClock

log = logging.getLogger(__name__)



class NodeSource(Protocol):
    """Where heartbeat rules learn each node's last heartbeat (``guardians.fleet.Fleet`` adapted)."""

    def last_heartbeats(self, now: datetime) -> Mapping[str, datetime]: ...


@dataclass
class CycleReport:
    at: datetime
    rules: int = 0
    queries: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    transitions: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, rule, alert id)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "rules": self.rules,
            "queries": self.queries,
            "errors": dict(self.errors),
            "transitions": len(self.transitions),
            "duration_s": round(self.duration_s, 4),
        }


@dataclass(frozen=True)
class _Shape:
    measurement: str
    aggregate: str
    window_s: float
    bucket_s: float | None
    where_keys: tuple[str, ...]
    group_by: tuple[str, ...]


def _shape(rule: AlertRule) -> _Shape:
    q = rule.query
    assert q is not None
    return _Shape(
        q.measurement,
        q.aggregate,
        q.window.total_seconds(),
        q.bucket.total_seconds() if q.function == "delta" and q.bucket else None,
        tuple(sorted(q.where)),
        tuple(q.group_by),
    )


@dataclass
class RuleResult:
    series: list[Series]
    status: str = "ok"  # ok | no_data | error
    error: str | None = None


def plan(rules: Sequence[AlertRule], now: datetime) -> list[tuple[Query, list[AlertRule]]]:
    """Group metric rules by query shape; one Query per group."""
    groups: dict[_Shape, list[AlertRule]] = defaultdict(list)
    for r in rules:
        if r.kind == "metric" and r.query is not None:
            groups[_shape(r)].append(r)
    out = []
    for shape, members in groups.items():
        fields: dict[str, None] = {}
        for r in members:
            fields.update(dict.fromkeys(r.query.fields()))  # type: ignore[union-attr]
        # tag filters every member shares are pushed down; the others become group-by labels
        common = dict(members[0].query.where)  # type: ignore[union-attr]
        for r in members[1:]:
            common = {k: v for k, v in common.items() if r.query.where.get(k) == v}  # type: ignore[union-attr]
        group_by = tuple(dict.fromkeys((*shape.group_by, *(k for k in shape.where_keys if k not in common))))
        window = members[0].query.window  # type: ignore[union-attr]
        q = Query(
            measurement=shape.measurement,
            fields=tuple(fields),
            start=now - window,
            end=now,
            aggregate=shape.aggregate,  # type: ignore[arg-type]
            bucket_s=int(shape.bucket_s) if shape.bucket_s else None,
            where=common,
            group_by=group_by,
        )
        out.append((q, members))
    return out


def _sum(values: Mapping[str, float | None], names: Iterable[str]) -> float | None:
    total, seen = 0.0, False
    for n in names:
        v = values.get(n)
        if v is not None:
            total += v
            seen = True
    return total if seen else None


def rule_series(rule: AlertRule, rows: Sequence[Row]) -> list[Series]:
    """The rule's value per label set from a batch's rows (condition not yet applied)."""
    q = rule.query
    assert q is not None
    mine = [r for r in rows if all(r.tags.get(k) == v for k, v in q.where.items())]
    per_series: dict[tuple, list[Row]] = defaultdict(list)
    for r in mine:
        per_series[tuple(r.tags.get(k, "") for k in q.group_by)].append(r)
    base = rule.base_labels()
    out = []
    for key, series_rows in per_series.items():
        labels = {
            **base,
            **{k: str(v) for k, v in q.where.items()},
            **dict(zip(q.group_by, key, strict=True)),
        }
        if q.function == "delta":
            points = [
                v
                for v in (_value(q, r.values) for r in sorted(series_rows, key=lambda r: r.time))
                if v is not None
            ]
            value = points[-1] - points[0] if len(points) >= 2 else None
        else:
            value = _value(q, series_rows[-1].values)
        if value is not None:
            out.append(Series(labels, value))
    return out


def _value(q: Any, values: Mapping[str, float | None]) -> float | None:
    if q.ratio is not None:
        num, den = _sum(values, q.ratio.numerator), _sum(values, q.ratio.denominator)
        if num is None or not den:
            return None
        return num / den
    return values.get(q.field)


class Evaluator:
    """Runs every enabled rule each cycle and persists the alerts' transitions."""

    def __init__(
        self,
        store: AlertStore,
        metrics: MetricStore,
        *,
        clock: Clock | None = None,
        nodes: NodeSource | None = None,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.nodes = nodes
        self.on_transition = on_transition
        self.states = AlertStates(store.open_alerts())
        self._parsed: dict[str, tuple[dict, AlertRule | None]] = {}

    # ------------------------------------------------------------ rules
    def rules(self) -> list[AlertRule]:
        """The enabled rules of the control DB (documents parsed once, re-parsed when changed)."""
        out = []
        seen = set()
        for doc in self.store.rule_documents():
            name = doc.get("name", "")
            seen.add(name)
            cached = self._parsed.get(name)
            if cached is None or cached[0] != doc:
                try:
                    rule = parse_rule(doc, f"rule {name}")
                except ValueError as exc:
                    log.error("alert rule %s in the control DB is invalid, skipped: %s", name, exc)
                    rule = None
                self._parsed[name] = (doc, rule)
                cached = self._parsed[name]
            if cached[1] is not None and cached[1].enabled:
                out.append(cached[1])
        for name in list(self._parsed):
            if name not in seen:
                del self._parsed[name]
        return out

    # ------------------------------------------------------------ evaluation
    def evaluate(self, *, only: Callable[[AlertRule], bool] | None = None) -> CycleReport:
        """One cycle over every enabled rule (or those ``only`` selects)."""
        started = time.perf_counter()
        now = self.clock.now()
        report = CycleReport(at=now)
        self.states.sync(self.store.open_alerts())
        rules = self.rules()
        if only is None:
            transitions = self.states.drop_rules_except({r.name for r in rules}, now)
        else:
            transitions = []
            rules = [r for r in rules if only(r)]
        report.rules = len(rules)
        results: dict[str, RuleResult] = {}
        for query, members in plan(rules, now):
            report.queries += 1
            try:
                rows = self.metrics.query(query)
            except Exception as exc:  # the store failed: every rule of the batch follows on_error
                log.warning(
                    "metric query on %s failed for %d rule(s): %s", query.measurement, len(members), exc
                )
                for r in members:
                    results[r.name] = RuleResult([], "error", f"{type(exc).__name__}: {exc}")
                continue
            for r in members:
                try:
                    series = rule_series(r, rows)
                    results[r.name] = RuleResult(series, "ok" if series else "no_data")
                except Exception as exc:
                    log.exception("alert rule %s failed", r.name)
                    results[r.name] = RuleResult([], "error", f"{type(exc).__name__}: {exc}")
        for r in rules:
            if r.kind == "heartbeat":
                results[r.name] = self._heartbeats(r, now)
        for r in rules:
            res = results.get(r.name)
            if res is None:
                continue
            try:
                transitions.extend(self._apply(r, res, now))
            except Exception as exc:
                log.exception("applying alert rule %s failed", r.name)
                res = RuleResult([], "error", str(exc))
            if res.status == "error":
                report.errors[r.name] = res.error or "error"
        self._persist(transitions, now)
        report.transitions = [
            (t.kind, t.record.rule, t.record.id) for t in transitions if t.kind != "updated"
        ]
        report.duration_s = time.perf_counter() - started
        return report

    def _heartbeats(self, rule: AlertRule, now: datetime) -> RuleResult:
        if self.nodes is None:
            return RuleResult([], "no_data")
        try:
            beats = self.nodes.last_heartbeats(now)
        except Exception as exc:
            log.warning("reading node heartbeats failed: %s", exc)
            return RuleResult([], "error", f"{type(exc).__name__}: {exc}")
        base = rule.base_labels()
        series = [
            Series({**base, "instance": inst}, (now - at).total_seconds()) for inst, at in beats.items()
        ]
        return RuleResult(series, "ok" if series else "no_data")

    def _apply(self, rule: AlertRule, res: RuleResult, now: datetime) -> list[Transition]:
        if res.status == "ok":
            holding = [
                s for s in res.series if s.value is not None and compare(rule.op, s.value, rule.threshold)
            ]
            return self.states.apply(rule, holding, now)
        policy = rule.no_data if res.status == "no_data" else rule.on_error
        return self.states.apply(rule, [], now, policy=policy, reason=res.status)

    def _persist(self, transitions: list[Transition], now: datetime) -> None:
        if not transitions:
            return
        done: list[Transition] = []
        with self.store.begin() as conn:
            for t in transitions:
                rec = t.record
                if t.new:
                    self.store.insert_alert(rec, conn)
                elif not self.store.update_alert(rec, conn, AlertStore.EVALUATOR_COLUMNS, only_open=True):
                    # resolved by a person since this cycle began: theirs stands
                    self.states.forget(rec.fingerprint)
                    continue
                done.append(t)
                if t.kind != "updated":
                    self.store.add_event(rec.id, now, t.kind, detail=t.detail, value=rec.value, conn=conn)
        for t in done:
            if t.kind != "updated":
                log.info("alert %s %s %s value=%s", t.record.id, t.record.rule, t.kind, t.record.value)
                if self.on_transition is not None:
                    try:
                        self.on_transition(t)
                    except Exception:
                        log.exception("transition listener failed")

    # ------------------------------------------------------------ events
    def on_breaker_event(self, event: Any, labels: Mapping[str, str] | None = None) -> list[Transition]:
        """A ``guardians.events.BreakerStateChanged``: rules with ``on_breaker_state`` equal to the
        new state fire at once (no ``for``, no waiting for the next cycle); rules whose state the
        breaker left are resolved at once. ``labels`` adds e.g. app and instance of the node."""
        now = self.clock.now()
        extra = {"resource": event.resource, **dict(labels or {})}
        transitions: list[Transition] = []
        for rule in self.rules():
            if rule.on_breaker_state is None:
                continue
            full = {**rule.base_labels(), **extra}
            if event.state == rule.on_breaker_state:
                transitions += self.states.raise_now(
                    rule,
                    full,
                    now,
                    _state_code(event.state),
                    f"breaker {event.resource} {event.previous} → {event.state}",
                )
            elif event.previous == rule.on_breaker_state:
                transitions += self.states.resolve_now(
                    full,
                    now,
                    f"breaker {event.resource} {event.previous} → {event.state}",
                    keep=rule.keep_firing_for,
                )
        self._persist(transitions, now)
        return transitions


__all__ = [
    "FIRING",
    "RESOLVED",
    "CycleReport",
    "Evaluator",
    "NodeSource",
    "RuleResult",
    "plan",
    "rule_series",
]


def _state_code(state: str) -> float | None:
    """A breaker state as the number ``breaker_events.state`` stores (collectors.points.BREAKER_STATES)."""
    code = BREAKER_STATES.get(state)
    return None if code is None else float(code)
