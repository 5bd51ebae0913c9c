"""The Rules page: the version in force, drafts (YAML or form) validated by guardians' own parser,
diffs, apply, history, rollback and the impact preview of a proposed flow/param rule."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import yaml

from collectors.query import MetricStore, Query
from console.services.common import RULE_TYPES, FieldError, errors_from, run_query
from console.services.ports import RuleStorePort
from dashboards import queries as q
from dashboards.impact import FlowProposal, ImpactResult, ParamProposal, replay, samples_from_rows
from dashboards.ranges import last_seconds, recent
from dashboards.suggest import SuggestResult, bucket_for, suggest_from_rows, traffic_query
from domain import ports as core
from guardians.errors import RuleValidationError
from guardians.rules import canonical
from guardians.store import RuleVersion

log = logging.getLogger(__name__)


class RuleDocumentInvalid(ValueError):
    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.path or 'document'}: {e.message}" for e in self.errors))


@dataclass(frozen=True)
class RuleVersionView:
    version: int
    document: dict[str, Any]
    by: str
    why: str
    at: datetime
    restored_from: int | None = None  # a rollback: the version whose rules were restored


def version_view(v: RuleVersion | None) -> RuleVersionView | None:
    """The page's view of a ``guardians.store.RuleVersion``."""
    if v is None:
        return None
    return RuleVersionView(
        version=v.version,
        document=dict(v.document),
        by=v.created_by,
        why=v.why,
        at=v.created_at,
        restored_from=v.restored_from,
    )


def document_yaml(document: Mapping[str, Any], *, block: bool = False) -> str:
    """A rule document as YAML: one rule per line (compact, for editing) or one field per line
    (``block``, for diffs: a changed field is a changed line)."""
    ordered = {k: document.get(k, []) for k in RULE_TYPES if k in document}
    ordered.update({k: v for k, v in document.items() if k not in ordered})
    return yaml.safe_dump(
        ordered, sort_keys=False, allow_unicode=True, default_flow_style=False if block else None, width=100
    )


def unified_diff(old: Mapping[str, Any], new: Mapping[str, Any], old_name: str, new_name: str) -> str:
    def lines(doc: Mapping[str, Any]) -> list[str]:
        # no rules is no lines: against nothing, every line of the other side is added ('-{}' read
        # as a rule being removed)
        return document_yaml(doc, block=True).splitlines(keepends=True) if doc else []

    return "".join(difflib.unified_diff(lines(old), lines(new), fromfile=old_name, tofile=new_name))


def _normalised(document: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty rule types so ``system: []`` vs. absent is no diff."""
    return {k: v for k, v in document.items() if v not in (None, [], {})}


def _who_and_why(by: str, why: str) -> list[FieldError]:
    problems = []
    if not by.strip():
        problems.append(FieldError("by", "your name is required: every change records who made it"))
    if not why.strip():
        problems.append(FieldError("why", "a reason is required: every change records why"))
    return problems


def validate(document: Mapping[str, Any]) -> list[FieldError]:
    """Errors of a draft document (empty when valid), each naming its field path."""
    if not isinstance(document, Mapping):
        return [FieldError("", "a rule document is a mapping from rule type to a list of rules")]
    try:
        canonical(document)
    except RuleValidationError as exc:
        return errors_from(exc)
    return []


def canonical_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as the store will keep it (defaults filled in) when valid, else as it is."""
    try:
        return canonical(document)
    except RuleValidationError:
        return dict(document)


def parse_yaml(text: str) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """YAML (or JSON) text → (document, errors); a syntax error names the line."""
    try:
        loaded = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)  # a MarkedYAMLError has one; a plain YAMLError none
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [FieldError(where, f"not valid YAML: {problem}")]
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, Mapping):
        return None, [
            FieldError(
                "",
                f"a rule document is a mapping from rule type ({', '.join(RULE_TYPES)}) to a list of rules",
            )
        ]
    document = dict(loaded)
    return document, validate(document)


def diff(document: Mapping[str, Any], current: RuleVersionView | None) -> str:
    """Unified diff (YAML) of the version in force → ``document``; empty when nothing changes."""
    old = current.document if current else {}
    name = f"version {current.version} (in force)" if current else "no rules yet"
    return unified_diff(_normalised(old), _normalised(canonical_document(document)), name, "proposed")


def apply(store: RuleStorePort, app: str, document: Mapping[str, Any], by: str, why: str) -> int:
    """Validate and store ``document`` as a new version; returns the version in force."""
    problems = _who_and_why(by, why) + validate(document)
    if problems:
        raise RuleDocumentInvalid(problems)
    try:
        version = store.apply(app, dict(document), by.strip(), why.strip())
    except RuleValidationError as exc:
        raise RuleDocumentInvalid(errors_from(exc)) from exc
    log.info("rules of %s: version %s applied by %s (%s)", app, version, by, why)
    return version


def rollback(store: RuleStorePort, app: str, n: int, by: str, why: str) -> int:
    """Restore version ``n``'s rules as a new version; returns its number."""
    problems = _who_and_why(by, why)
    if problems:
        raise RuleDocumentInvalid(problems)
    version = store.rollback(app, n, by.strip(), why.strip())
    log.info("rules of %s: rolled back to version %s as version %s by %s (%s)", app, n, version, by, why)
    return version


def history(store: RuleStorePort, app: str) -> list[RuleVersionView]:
    """Every version, newest first."""
    views = [version_view(v) for v in store.history(app)]
    return sorted((v for v in views if v is not None), key=lambda v: -v.version)


def impact(
    metrics: MetricStore,
    app: str,
    resource: str,
    proposal: FlowProposal | ParamProposal,
    minutes: int,
    now: datetime,
) -> ImpactResult:
    """Replay the last ``minutes`` of ``resource``'s recorded traffic: 1 metric-store query."""
    if not 1 <= minutes <= 60:
        raise ValueError(f"minutes must be from 1 to 60, got {minutes}")
    w = last_seconds(now, minutes * 60)
    rows = metrics.query(q.resource_traffic(w, resource, app))
    return replay(samples_from_rows(rows, q.BLOCK_FIELDS), proposal)


# The trading core's guarded resources (domain.ports): known even before any traffic.
CORE_RESOURCES: tuple[str, ...] = (
    core.ORDER_PLACE,
    core.ORDER_PAY,
    core.ORDER_GET,
    core.INVENTORY_RESERVE,
    core.PAYMENT_CHARGE,
    core.REFUND_REQUEST,
)
KNOWN_LOOKBACK_S = 3600


def known_resources(
    metrics: MetricStore, app: str, now: datetime, errors: list[str] | None = None
) -> list[str]:
    """Resources a rule can name: the core's, plus every resource with traffic recorded in the last
    hour (1 metric-store query; a store error leaves the core's names and a message in ``errors``)."""
    w = recent(now, KNOWN_LOOKBACK_S)
    query = Query(
        q.RESOURCE_STATS, ("pass",), w.start, w.end, "count", None, {"app": app} if app else {}, ("resource",)
    )
    rows = run_query(metrics, query, errors if errors is not None else [], "known resources")
    names = {r.tags.get("resource", "") for r in rows} | set(CORE_RESOURCES)
    return sorted(n for n in names if n)


# ------------------------------------------------------------------ threshold suggestions
def suggest(
    metrics: MetricStore, app: str, resource: str, range_s: int, now: datetime, *, margin: float = 0.2
) -> tuple[SuggestResult, ImpactResult | None]:
    """A threshold suggestion for ``resource`` from its recorded traffic over the last ``range_s``
    (up to 7 days; 1 metric-store query) and the impact preview of the proposed QPS threshold over
    the last hour of it (1 more query, only when there is a suggestion)."""
    start = now - timedelta(seconds=range_s)
    bucket_for(range_s)  # raises for a range out of bounds
    rows = metrics.query(traffic_query(start, now + timedelta(seconds=1), resource, app))
    result = suggest_from_rows(resource, rows, margin=margin)
    preview = None
    if result.suggestion is not None:
        preview = impact(metrics, app, resource, FlowProposal(result.suggestion.qps, "qps"),
                         min(60, max(1, range_s // 60)), now)
    return result, preview


def impact_summary(result: ImpactResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "offered": result.offered,
        "would_pass": result.would_pass,
        "would_block": result.would_block,
        "block_share": round(result.block_share, 4),
        "seconds_blocking": result.seconds_blocking,
        "peak_offered_qps": result.peak_offered_qps,
        "seconds": len(result.seconds),
    }
