"""The console's application services: the only thing pages talk to.

Pages get plain data back (dataclasses, pandas frames, plotly-ready series) and
never build SQL, touch ORM models or open stores. ``build_services(config)`` opens
the stores once per process (the Streamlit app caches it with ``st.cache_resource``);
tests build ``ConsoleServices`` directly with fakes implementing the ports.

Reads are bounded per call; each live read returns how many store queries it issued
(``queries``), so the page docstrings' counts are checked by tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pandas as pd
import yaml

from collectors.query import MetricStore, Query, Row
from common.clock import Clock, SystemClock
from dashboards import queries as q
from dashboards.frames import frame, has_any, per_second, ratio_percent
from dashboards.impact import FlowProposal, ImpactResult, ParamProposal, replay, samples_from_rows
from dashboards.ranges import Window, last_seconds, window

log = logging.getLogger(__name__)

RULE_TYPES: tuple[str, ...] = ("flow", "breaker", "system", "param", "degrade")
BREAKER_STATE_CODES: dict[int, str] = {0: "closed", 1: "open", 2: "half_open"}


# ----------------------------------------------------------------------------- ports
class RuleStorePort(Protocol):
    def current(self, app: str) -> Any: ...
    def apply(self, app: str, document: Mapping[str, Any], by: str, why: str) -> Any: ...
    def history(self, app: str) -> Sequence[Any]: ...
    def version(self, app: str, n: int) -> Any: ...
    def rollback(self, app: str, n: int, by: str, why: str) -> Any: ...


class FleetPort(Protocol):
    def nodes(self, now: datetime) -> Sequence[Any]: ...


class ChaosPort(Protocol):
    def get(self) -> dict[str, Any]: ...
    def set(self, *, latency_ms: int, error_rate: float, outage: bool, by: str) -> dict[str, Any]: ...


class AlertsPort(Protocol):
    """What the Alerts page needs of ``alerts.service.AlertService`` (plain data in and out)."""

    def list_alerts(
        self, states: Sequence[str] = ..., *, acknowledged: bool | None = ..., limit: int = ...
    ) -> list[dict[str, Any]]: ...
    def timeline(self, alert_id: int) -> dict[str, Any]: ...
    def metric_behind(self, alert_id: int, *, minutes: int = ..., bucket_s: int = ...) -> dict[str, Any]: ...
    def acknowledge(self, alert_id: int, by: str, comment: str | None = ...) -> dict[str, Any]: ...
    def unacknowledge(self, alert_id: int, by: str) -> dict[str, Any]: ...
    def resolve(self, alert_id: int, by: str, comment: str | None = ...) -> dict[str, Any]: ...
    def history(self, *, limit: int = ..., since: datetime | None = ...) -> list[dict[str, Any]]: ...
    def silences(self, *, include_expired: bool = ...) -> list[dict[str, Any]]: ...
    def create_silence(
        self,
        matchers: Any,
        *,
        created_by: str,
        comment: str,
        duration: Any = ...,
        starts_at: Any = ...,
        ends_at: Any = ...,
    ) -> dict[str, Any]: ...
    def expire_silence(self, silence_id: int, by: str) -> dict[str, Any]: ...
    def on_call_now(self, at: datetime | None = ...) -> list[dict[str, Any]]: ...


Validator = Callable[[Mapping[str, Any]], None]  # raises an error with ``.errors`` [(path, message)]


# ----------------------------------------------------------------------------- plain data
@dataclass(frozen=True)
class FieldError:
    path: str  # e.g. "flow[0].threshold" (or "" for the document)
    message: str


class RuleDocumentInvalid(ValueError):
    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.path or 'document'}: {e.message}" for e in self.errors))


@dataclass(frozen=True)
class RuleVersionView:
    version: int
    document: dict[str, Any]
    by: str = ""
    why: str = ""
    at: datetime | None = None
    diff: str = ""  # unified text diff when the store keeps one (guardians keeps a structured one)
    restored_from: int | None = None  # a rollback: the version whose rules were restored


@dataclass(frozen=True)
class BreakerView:
    resource: str
    instance: str
    state: str
    since: datetime


@dataclass(frozen=True)
class OverviewData:
    window: Window
    orders: pd.DataFrame  # placed, paid — per second
    payment_success: pd.Series  # % per bucket, NaN without charges
    rt: pd.DataFrame  # p50, p99 — ms of order.place
    blocked: pd.DataFrame  # flow, param, system, breaker — per second
    gmv: pd.Series  # currency units per minute
    breakers_open: list[BreakerView]
    kpis: dict[str, float | None]
    has_data: bool
    queries: int
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResourceRow:
    resource: str
    passed: int
    blocked: int
    block_flow: int
    block_param: int
    block_system: int
    block_breaker: int
    success: int
    error: int
    pass_qps: float
    block_share_pct: float | None
    error_share_pct: float | None
    rt_avg_ms: float | None


@dataclass(frozen=True)
class ResourcesData:
    window: Window
    rows: list[ResourceRow]
    queries: int
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResourceDetail:
    resource: str
    window: Window
    rates: pd.DataFrame  # pass, block_*, success, error — per second
    rt_ms: pd.Series
    rules: dict[str, list[dict[str, Any]]]  # rule type -> rules in force for this resource
    rule_version: int | None
    has_data: bool
    queries: int
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AlertsBoard:
    open_alerts: list[dict[str, Any]]  # firing and pending, newest first
    silences: list[dict[str, Any]]  # active and pending
    on_call: list[dict[str, Any]]
    calls: int  # alert-service reads
    errors: list[str] = field(default_factory=list)

    @property
    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.open_alerts if a.get("state") == "firing"]

    @property
    def pending(self) -> list[dict[str, Any]]:
        return [a for a in self.open_alerts if a.get("state") == "pending"]

    @property
    def acknowledged(self) -> list[dict[str, Any]]:
        return [a for a in self.open_alerts if a.get("acknowledged")]


class ActionFailed(ValueError):
    """An alert action was refused; ``errors`` name the field when the service did."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.path or 'action'}: {e.message}" for e in self.errors))


@dataclass(frozen=True)
class InstanceView:
    instance: str
    address: str
    status: str  # live | stale | gone
    version: str
    rule_version: int | None
    last_beat: datetime | None
    last_snapshot_at: datetime | None
    outdated: bool  # runs another rule version than the one in force


@dataclass(frozen=True)
class InstancesData:
    nodes: list[InstanceView]
    rule_version_in_force: int | None
    queries: int
    errors: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers
def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def plain_document(doc: Any) -> dict[str, Any]:
    """A rule document as a plain mapping (from a mapping, a RuleSet with ``to_document``, or YAML text)."""
    if doc is None:
        return {}
    if isinstance(doc, str):
        loaded = yaml.safe_load(doc) or {}
        return dict(loaded) if isinstance(loaded, Mapping) else {}
    for method in ("to_document", "as_document", "to_dict"):
        fn = getattr(doc, method, None)
        if callable(fn):
            return dict(fn())
    if isinstance(doc, Mapping):
        return {k: list(v) if isinstance(v, list | tuple) else v for k, v in doc.items()}
    return {}


def version_view(obj: Any) -> RuleVersionView | None:
    """Normalise what the rule store returns for a version (``guardians.store.RuleVersion``)."""
    if obj is None:
        return None
    if isinstance(obj, int):
        return RuleVersionView(version=obj, document={})
    restored = _get(obj, "restored_from")
    why = str(_get(obj, "why", "reason", default="") or "")
    return RuleVersionView(
        version=int(_get(obj, "version", "n", default=0) or 0),
        document=plain_document(_get(obj, "document", "doc", "rules")),
        by=str(_get(obj, "created_by", "by", "author", default="") or ""),
        why=why,
        at=_get(obj, "created_at", "at", "applied_at"),
        diff=_diff_text(_get(obj, "diff", default="")),
        restored_from=int(restored) if restored is not None else None,
    )


def _diff_text(diff: Any) -> str:
    """A stored diff as text; structured diffs (guardians: added/removed per type) are left to the
    console, which shows a YAML diff against the previous version instead."""
    return diff if isinstance(diff, str) else ""


def document_yaml(document: Mapping[str, Any], *, block: bool = False) -> str:
    """A rule document as YAML: one rule per line (compact, for editing) or one field per line
    (``block``, for diffs: a changed field is a changed line)."""
    ordered = {k: document.get(k, []) for k in RULE_TYPES if k in document}
    ordered.update({k: v for k, v in document.items() if k not in ordered})
    return yaml.safe_dump(
        ordered, sort_keys=False, allow_unicode=True, default_flow_style=False if block else None, width=100
    )


def unified_diff(old: Mapping[str, Any], new: Mapping[str, Any], old_name: str, new_name: str) -> str:
    import difflib

    return "".join(
        difflib.unified_diff(
            document_yaml(old, block=True).splitlines(keepends=True),
            document_yaml(new, block=True).splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
        )
    )


def errors_from(exc: Exception) -> list[FieldError]:
    raw = getattr(exc, "errors", None)
    if isinstance(raw, list | tuple) and raw:
        out = []
        for item in raw:
            if isinstance(item, list | tuple) and len(item) == 2:
                out.append(FieldError(str(item[0]), str(item[1])))
            else:
                out.append(FieldError("", str(item)))
        return out
    return [FieldError("", str(exc))]


def _num(v: Any) -> float:
    return float(v) if v is not None else 0.0


def _rule_resource(rule: Mapping[str, Any]) -> str | None:
    return rule.get("resource") if isinstance(rule, Mapping) else None


# ----------------------------------------------------------------------------- the facade
class ConsoleServices:
    def __init__(
        self,
        *,
        app: str,
        metrics: MetricStore,
        rules: RuleStorePort | None = None,
        validator: Validator | None = None,
        fleet: FleetPort | None = None,
        chaos: ChaosPort | None = None,
        alerts: AlertsPort | None = None,
        clock: Clock | None = None,
        currency: str = "¥",
        closers: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.rules = rules
        self.validator = validator
        self.fleet = fleet
        self.chaos = chaos
        self.alerts = alerts
        self.clock = clock or SystemClock()
        self.currency = currency
        self._closers = list(closers)

    def close(self) -> None:
        for fn in self._closers:
            try:
                fn()
            except Exception:  # closing is best effort
                log.exception("closing a console store failed")

    def now(self) -> datetime:
        return self.clock.now()

    # ------------------------------------------------------------------ metric reads
    def _run(self, query: Query, errors: list[str], label: str) -> list[Row]:
        try:
            return self.metrics.query(query)
        except Exception as exc:
            log.warning("console query %s failed: %s", label, exc)
            errors.append(f"{label}: {type(exc).__name__}: {exc}")
            return []

    def _percentile(self, w: Window, pct: str, errors: list[str]) -> tuple[list[Row], str, int]:
        """RT percentile rows; a store without percentiles falls back to mean / max (2 queries then)."""
        query = q.order_place_rt(w, self.app, percentile=pct)
        try:
            return self.metrics.query(query), query.fields[0], 1
        except Exception as exc:
            log.info("percentile %s unavailable (%s); falling back", pct, exc)
        fallback = Query(
            query.measurement,
            query.fields,
            query.start,
            query.end,
            "mean" if pct == "p50" else "max",
            query.bucket_s,
            query.where,
        )
        return self._run(fallback, errors, f"RT {pct}"), query.fields[0], 2

    def overview(self, range_key: str) -> OverviewData:
        """The Overview page's data: 7 metric-store queries (9 if the store has no percentiles)."""
        w = window(range_key, self.now())
        errors: list[str] = []
        n = 0

        orders_rows = self._run(q.orders_rate(w, self.app), errors, "orders")
        n += 1
        orders = per_second(frame(orders_rows, ["placed", "paid"], w), w)

        pay_rows = self._run(q.payment_outcomes(w, self.app), errors, "payments")
        n += 1
        pay = frame(pay_rows, ["success", "failure"], w)
        success_pct = ratio_percent(pay["success"], pay["success"] + pay["failure"])

        rt = pd.DataFrame(index=pd.DatetimeIndex(w.buckets(), name="time"))
        for pct in ("p50", "p99"):
            rows, fld, used = self._percentile(w, pct, errors)
            n += used
            rt[pct] = frame(rows, [fld], w, fill=None)[fld]

        blocked_query = q.blocked_by_reason(w, self.app)
        blocked_query = Query(
            blocked_query.measurement,
            ("pass", *blocked_query.fields),
            blocked_query.start,
            blocked_query.end,
            "sum",
            blocked_query.bucket_s,
            blocked_query.where,
        )
        blocked_rows = self._run(blocked_query, errors, "blocked")
        n += 1
        calls = frame(blocked_rows, list(blocked_query.fields), w)
        blocked = per_second(calls[list(q.BLOCK_FIELDS)], w)
        blocked.columns = list(q.REASONS)

        breaker_rows = self._run(q.breaker_states(w, self.app), errors, "breakers")
        n += 1
        breakers = [
            BreakerView(
                resource=r.tags.get("resource", "?"),
                instance=r.tags.get("instance", "?"),
                state=BREAKER_STATE_CODES.get(int(r.values.get("state") or 0), "?"),
                since=r.time,
            )
            for r in breaker_rows
            if r.values.get("state") is not None and int(r.values["state"]) in (1, 2)
        ]
        breakers.sort(key=lambda b: (b.state != "open", b.resource, b.instance))

        gmv_query = q.gmv_per_minute(w, self.app)
        gmv_rows = self._run(gmv_query, errors, "GMV")
        n += 1
        gw = Window(gmv_query.start, gmv_query.end, int(gmv_query.bucket_s or 60))
        gmv = frame(gmv_rows, ["gmv"], gw)["gmv"] * (60.0 / gw.bucket_s)

        placed = float((orders["placed"] * w.bucket_s).sum())
        paid = float((orders["paid"] * w.bucket_s).sum())
        charges = float(pay["success"].sum() + pay["failure"].sum())
        total_blocked = float(calls[list(q.BLOCK_FIELDS)].to_numpy().sum())
        total_calls = float(calls["pass"].sum()) + total_blocked
        recent = max(1, -(-10 // w.bucket_s))  # buckets covering the last >= 10 s
        last = w.buckets()[-recent:]
        kpis: dict[str, float | None] = {
            "placed": placed,
            "paid": paid,
            "placed_per_s_now": float(orders.loc[orders.index.isin(last), "placed"].mean()) if last else 0.0,
            "now_span_s": float(recent * w.bucket_s),
            "payment_success_pct": 100.0 * float(pay["success"].sum()) / charges if charges else None,
            "blocked": total_blocked,
            "blocked_share_pct": 100.0 * total_blocked / total_calls if total_calls else None,
            "rt_p99_ms": float(rt["p99"].max()) if rt["p99"].notna().any() else None,
            "gmv": float(frame(gmv_rows, ["gmv"], gw)["gmv"].sum()),
            "breakers_open": float(sum(1 for b in breakers if b.state == "open")),
        }
        has_data = any(has_any(df) for df in (orders, pay, calls)) or bool(breakers) or bool(gmv_rows)
        return OverviewData(
            window=w,
            orders=orders,
            payment_success=success_pct,
            rt=rt,
            blocked=blocked,
            gmv=gmv,
            breakers_open=breakers,
            kpis=kpis,
            has_data=has_data,
            queries=n,
            errors=errors,
        )

    def resources(self, range_key: str) -> ResourcesData:
        """Every resource's totals over the range: 2 metric-store queries."""
        w = window(range_key, self.now())
        errors: list[str] = []
        totals = self._run(q.resource_totals(w, self.app), errors, "resource totals")
        rts = self._run(q.resource_rt(w, self.app), errors, "resource RT")
        rt_by = {r.tags.get("resource", ""): r.values.get("rt_avg_ms") for r in rts}
        acc: dict[str, dict[str, float]] = {}
        for r in totals:
            name = r.tags.get("resource", "")
            slot = acc.setdefault(name, {})
            for f in q.COUNT_FIELDS:
                slot[f] = slot.get(f, 0.0) + _num(r.values.get(f))
        rows = []
        for name, v in acc.items():
            blocked = sum(v.get(f, 0.0) for f in q.BLOCK_FIELDS)
            offered = v.get("pass", 0.0) + blocked
            done = v.get("success", 0.0) + v.get("error", 0.0)
            rt = rt_by.get(name)
            rows.append(
                ResourceRow(
                    resource=name,
                    passed=int(v.get("pass", 0)),
                    blocked=int(blocked),
                    block_flow=int(v.get("block_flow", 0)),
                    block_param=int(v.get("block_param", 0)),
                    block_system=int(v.get("block_system", 0)),
                    block_breaker=int(v.get("block_breaker", 0)),
                    success=int(v.get("success", 0)),
                    error=int(v.get("error", 0)),
                    pass_qps=v.get("pass", 0.0) / w.seconds,
                    block_share_pct=100.0 * blocked / offered if offered else None,
                    error_share_pct=100.0 * v.get("error", 0.0) / done if done else None,
                    rt_avg_ms=float(rt) if rt is not None else None,
                )
            )
        rows.sort(key=lambda r: (-r.blocked, -(r.passed + r.blocked), r.resource))  # blocked first
        return ResourcesData(window=w, rows=rows, queries=2, errors=errors)

    def resource_detail(self, resource: str, range_key: str) -> ResourceDetail:
        """One resource's charts and rules: 2 metric-store queries + 1 rule-store read."""
        w = window(range_key, self.now())
        errors: list[str] = []
        rows = self._run(q.resource_series(w, resource, self.app), errors, "resource series")
        rt_rows = self._run(q.resource_rt_series(w, resource, self.app), errors, "resource RT")
        rates = per_second(frame(rows, list(q.COUNT_FIELDS), w), w)
        rt = frame(rt_rows, ["rt_avg_ms"], w, fill=None)["rt_avg_ms"]
        current = None
        try:
            current = self.rules_in_force()
        except Exception as exc:
            errors.append(f"rules: {type(exc).__name__}: {exc}")
        rules: dict[str, list[dict[str, Any]]] = {}
        if current is not None:
            for kind in RULE_TYPES:
                mine = [dict(r) for r in current.document.get(kind) or [] if _rule_resource(r) == resource]
                if mine:
                    rules[kind] = mine
        return ResourceDetail(
            resource=resource,
            window=w,
            rates=rates,
            rt_ms=rt,
            rules=rules,
            rule_version=current.version if current else None,
            has_data=has_any(rates),
            queries=3,
            errors=errors,
        )

    # ------------------------------------------------------------------ rules
    def _store(self) -> RuleStorePort:
        if self.rules is None:
            raise RuntimeError("no rule store configured (TRADEGUARD_CONTROL_DB)")
        return self.rules

    def rules_in_force(self) -> RuleVersionView | None:
        return version_view(self._store().current(self.app))

    def validate(self, document: Mapping[str, Any]) -> list[FieldError]:
        """Errors of a draft document (empty when valid), each naming its field path."""
        if not isinstance(document, Mapping):
            return [FieldError("", "a rule document is a mapping from rule type to a list of rules")]
        if self.validator is None:
            return []
        try:
            self.validator(document)
        except Exception as exc:
            return errors_from(exc)
        return []

    def canonical(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """The document as the store will keep it (defaults filled in) when valid, else as it is."""
        if self.validator is None:
            return dict(document)
        try:
            parsed = self.validator(document)
        except Exception:
            return dict(document)
        return plain_document(parsed) if parsed is not None else dict(document)

    def parse_yaml(self, text: str) -> tuple[dict[str, Any] | None, list[FieldError]]:
        """YAML (or JSON) text → (document, errors); a syntax error names the line."""
        try:
            loaded = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
            problem = getattr(exc, "problem", None) or str(exc)
            return None, [FieldError(where, f"not valid YAML: {problem}")]
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            return None, [
                FieldError(
                    "",
                    "a rule document is a mapping from rule type "
                    f"({', '.join(RULE_TYPES)}) to a list of rules",
                )
            ]
        document = dict(loaded)
        return document, self.validate(document)

    def diff(self, document: Mapping[str, Any], *, current: RuleVersionView | bool | None = True) -> str:
        """Unified diff (YAML) of the version in force → ``document``; empty when nothing changes.

        Pass ``current`` (the version in force, or None for none) when the caller has just read it."""
        if current is True:
            current = self.rules_in_force()
        assert current is None or isinstance(current, RuleVersionView)
        document = self.canonical(document)
        old = current.document if current else {}
        name = f"version {current.version} (in force)" if current else "no rules yet"
        return unified_diff(_normalised(old), _normalised(document), name, "proposed")

    def apply(self, document: Mapping[str, Any], by: str, why: str) -> int:
        """Validate and store ``document`` as a new version; returns the version number."""
        problems = []
        if not by.strip():
            problems.append(FieldError("by", "your name is required: every change records who made it"))
        if not why.strip():
            problems.append(FieldError("why", "a reason is required: every change records why"))
        problems += self.validate(document)
        if problems:
            raise RuleDocumentInvalid(problems)
        try:
            result = self._store().apply(self.app, dict(document), by.strip(), why.strip())
        except Exception as exc:
            if getattr(exc, "errors", None):
                raise RuleDocumentInvalid(errors_from(exc)) from exc
            raise
        version = _get(result, "version", default=result)
        log.info("rules of %s: version %s applied by %s (%s)", self.app, version, by, why)
        return int(version)

    def history(self) -> list[RuleVersionView]:
        views = [version_view(v) for v in self._store().history(self.app)]
        return sorted((v for v in views if v is not None), key=lambda v: -v.version)

    def version(self, n: int) -> RuleVersionView | None:
        return version_view(self._store().version(self.app, n))

    def rollback(self, n: int, by: str, why: str) -> int:
        problems = []
        if not by.strip():
            problems.append(FieldError("by", "your name is required: every change records who made it"))
        if not why.strip():
            problems.append(FieldError("why", "a reason is required: every change records why"))
        if problems:
            raise RuleDocumentInvalid(problems)
        result = self._store().rollback(self.app, n, by.strip(), why.strip())
        version = _get(result, "version", default=result)
        log.info(
            "rules of %s: rolled back to version %s as version %s by %s (%s)", self.app, n, version, by, why
        )
        return int(version)

    # ------------------------------------------------------------------ impact preview
    def impact(self, resource: str, proposal: FlowProposal | ParamProposal, minutes: int) -> ImpactResult:
        """Replay the last ``minutes`` of ``resource``'s recorded traffic: 1 metric-store query."""
        if not 1 <= minutes <= 60:
            raise ValueError(f"minutes must be from 1 to 60, got {minutes}")
        w = last_seconds(self.now(), minutes * 60)
        rows = self.metrics.query(q.resource_traffic(w, resource, self.app))
        return replay(samples_from_rows(rows, q.BLOCK_FIELDS), proposal)

    # ------------------------------------------------------------------ instances
    def instances(self) -> InstancesData:
        """Every node from the heartbeats: 1 fleet read + 1 rule-store read."""
        errors: list[str] = []
        in_force: int | None = None
        try:
            current = self.rules_in_force()
            in_force = current.version if current else None
        except Exception as exc:
            errors.append(f"rules: {type(exc).__name__}: {exc}")
        nodes: list[InstanceView] = []
        if self.fleet is None:
            errors.append("no fleet configured (TRADEGUARD_CONTROL_DB)")
        else:
            try:
                raw = self.fleet.nodes(self.now())
            except Exception as exc:
                raw = []
                errors.append(f"heartbeats: {type(exc).__name__}: {exc}")
            for node in raw:
                rv = _get(node, "rule_version")
                rv = int(rv) if rv is not None else None
                status = str(_get(node, "state", "status", default="?"))
                nodes.append(
                    InstanceView(
                        instance=str(_get(node, "instance", default="?")),
                        address=str(_get(node, "address", default="")),
                        status=status,
                        version=str(_get(node, "version", default="")),
                        rule_version=rv,
                        last_beat=_get(node, "last_beat_at", "last_beat", "beat_at", "last_seen"),
                        last_snapshot_at=_get(node, "last_snapshot_at"),
                        outdated=status != "gone" and in_force is not None and rv != in_force,
                    )
                )
        order = {"live": 0, "stale": 1, "gone": 2}
        nodes.sort(key=lambda n: (order.get(n.status, 3), n.instance))
        return InstancesData(nodes=nodes, rule_version_in_force=in_force, queries=2, errors=errors)

    # ------------------------------------------------------------------ chaos
    def chaos_settings(self) -> dict[str, Any]:
        if self.chaos is None:
            raise RuntimeError("chaos control is not available")
        return self.chaos.get()

    def set_chaos(self, *, latency_ms: int, error_rate: float, outage: bool, by: str) -> dict[str, Any]:
        if self.chaos is None:
            raise RuntimeError("chaos control is not available")
        return self.chaos.set(latency_ms=latency_ms, error_rate=error_rate, outage=outage, by=by)

    # ------------------------------------------------------------------ alerts
    @property
    def has_alerts(self) -> bool:
        return self.alerts is not None

    def _alerts(self) -> AlertsPort:
        if self.alerts is None:
            raise RuntimeError("alerting is not available")
        return self.alerts

    def alerts_board(self) -> AlertsBoard:
        """Open alerts, silences and who is on call: 3 alert-service reads."""
        svc = self._alerts()
        errors: list[str] = []

        def read(label: str, fn: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
            try:
                return list(fn())
            except Exception as exc:
                errors.append(f"{label}: {type(exc).__name__}: {exc}")
                return []

        open_alerts = read("alerts", lambda: svc.list_alerts(("firing", "pending")))
        silences = read("silences", lambda: svc.silences())
        on_call = read("on call", lambda: svc.on_call_now())
        order = {"firing": 0, "pending": 1}
        sev = {"critical": 0, "page": 0, "warning": 1, "info": 2}
        open_alerts.sort(
            key=lambda a: (
                order.get(a.get("state"), 2),
                bool(a.get("acknowledged")),
                sev.get(str(a.get("severity")), 3),
                -(a.get("id") or 0),
            )
        )
        return AlertsBoard(
            open_alerts=open_alerts, silences=silences, on_call=on_call, calls=3, errors=errors
        )

    def open_alerts(self) -> list[dict[str, Any]]:
        """Firing and pending alerts (1 alert-service read)."""
        return list(self._alerts().list_alerts(("firing", "pending")))

    def active_silences(self) -> list[dict[str, Any]]:
        """Active and pending silences (1 alert-service read)."""
        return list(self._alerts().silences())

    def alert_detail(self, alert_id: int, *, minutes: int = 30) -> tuple[dict[str, Any], dict[str, Any]]:
        """(timeline, metric behind the alert): 2 alert-service reads (the second queries metrics)."""
        svc = self._alerts()
        timeline = svc.timeline(alert_id)
        try:
            metric = svc.metric_behind(alert_id, minutes=minutes, bucket_s=max(5, minutes * 60 // 180))
        except Exception as exc:
            metric = {
                "rule": timeline.get("alert", {}).get("rule"),
                "threshold": None,
                "op": None,
                "points": [],
                "error": f"{type(exc).__name__}: {exc}",
            }
        return timeline, metric

    def alert_history(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._alerts().history(limit=limit)

    def alert_action(self, action: str, alert_id: int, by: str, comment: str = "") -> dict[str, Any]:
        """``acknowledge`` | ``unacknowledge`` | ``resolve`` an alert as ``by``."""
        if not by.strip():
            raise ActionFailed([FieldError("by", "your name is required: every action records who took it")])
        svc = self._alerts()
        try:
            if action == "acknowledge":
                return svc.acknowledge(alert_id, by.strip(), comment or None)
            if action == "unacknowledge":
                return svc.unacknowledge(alert_id, by.strip())
            if action == "resolve":
                return svc.resolve(alert_id, by.strip(), comment or None)
        except Exception as exc:
            raise ActionFailed(errors_from(exc)) from exc
        raise ValueError(f"action must be one of acknowledge, unacknowledge, resolve, got {action!r}")

    def silence(self, matchers: Sequence[str], *, by: str, comment: str, duration: str) -> dict[str, Any]:
        try:
            return self._alerts().create_silence(
                list(matchers), created_by=by.strip(), comment=comment, duration=duration
            )
        except Exception as exc:
            raise ActionFailed(errors_from(exc)) from exc

    def expire_silence(self, silence_id: int, by: str) -> dict[str, Any]:
        if not by.strip():
            raise ActionFailed([FieldError("by", "your name is required: every action records who took it")])
        try:
            return self._alerts().expire_silence(silence_id, by.strip())
        except Exception as exc:
            raise ActionFailed(errors_from(exc)) from exc


def _normalised(document: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty rule types so ``system: []`` vs. absent is no diff."""
    return {k: v for k, v in document.items() if v not in (None, [], {})}


# ----------------------------------------------------------------------------- wiring
def build_services(config: Any, *, clock: Clock | None = None) -> ConsoleServices:
    """Open the stores named by ``config`` (a ``console.config.ConsoleConfig``): once per process."""
    from alerts.service import AlertService
    from alerts.store import AlertStore
    from collectors.registry import open_store
    from console.nodes import NodeChaos
    from guardians.fleet import Fleet
    from guardians.rules import parse_document
    from guardians.store import RuleStore

    metrics_url = config.metrics_store_url()
    control_url = config.control_db_url()
    _ensure_sqlite_dir(metrics_url)
    _ensure_sqlite_dir(control_url)
    metrics = open_store(metrics_url, **config.credentials())
    rules = RuleStore(control_url)
    fleet = Fleet(control_url)
    alert_store = AlertStore(control_url)
    closers: list[Callable[[], None]] = [metrics.close, rules.close, fleet.close, alert_store.close]
    alerts = AlertService(alert_store, metrics=metrics)
    chaos = NodeChaos(fleet, clock=clock or SystemClock(), timeout_s=config.console_node_timeout_s)
    log.info(
        "console services: app=%s control DB %s, metrics %s",
        config.app,
        _safe(control_url),
        _safe(metrics_url),
    )
    return ConsoleServices(
        app=config.app,
        metrics=metrics,
        rules=rules,
        validator=parse_document,
        fleet=fleet,
        chaos=chaos,
        alerts=alerts,
        clock=clock,
        currency=config.console_currency,
        closers=closers,
    )


def _ensure_sqlite_dir(url: str) -> None:
    from pathlib import Path

    for prefix in ("sqlite+pysqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :].split("?", 1)[0]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return
    if "://" not in url and url:
        from pathlib import Path

        Path(url).parent.mkdir(parents=True, exist_ok=True)


def _safe(url: str) -> str:
    """A URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
