"""The Alert rules page: list, create, edit, enable/disable, delete alert rules, diff against the rule
in force, back-test before saving, history and rollback — through ``AlertService``'s plain dicts.

Validation is the YAML import's (``alerts.rulefile``: the models of ``alerts.schema``): a bad rule is
refused whole and every error names its field (``rule.query.aggregate``). Every change is stored as a
new version of the alert rules with who and why (``alerts.rule_versions``). ``by`` is the signed-in
user (the page's services replace any name with the principal's); a save without a reason records
what it did.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import yaml

from alerts.errors import AlertConfigError
from alerts.rulefile import parse_rule, rule_to_dict
from console.services.common import FieldError, errors_from

BACKTEST_HOURS = (1, 6, 24, 72)


class AlertRulesPort(Protocol):
    """What the Alert rules page needs of ``alerts.service.AlertService``."""

    def rules(self) -> list[dict[str, Any]]: ...
    def apply(self, document: Any, *, by: str, prune: bool = ..., why: str = ...) -> dict[str, Any]: ...
    def set_rule_enabled(self, name: str, enabled: bool, *, by: str, why: str = ...) -> dict[str, Any]: ...
    def delete_rule(self, name: str, *, by: str = ..., why: str = ...) -> None: ...
    def rule_history(self, *, limit: int = ...) -> list[dict[str, Any]]: ...
    def rollback_rules(self, version: int, *, by: str, why: str = ...) -> dict[str, Any]: ...
    def backtest(
        self,
        rule: Mapping[str, Any],
        *,
        start: datetime | None = ...,
        end: datetime | None = ...,
        interval_s: int = ...,
        with_series: bool = ...,
    ) -> dict[str, Any]: ...


class AlertRuleRefused(ValueError):
    """A rule change was refused; ``errors`` name the fields."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.path or 'rule'}: {e.message}" for e in self.errors))


def _refuse(exc: Exception) -> AlertRuleRefused:
    return AlertRuleRefused(errors_from(exc))


def _need(value: str, name: str, what: str) -> str:
    if not value or not value.strip():
        raise AlertRuleRefused([FieldError(name, what)])
    return value.strip()


def need_name(by: str) -> str:
    return _need(by, "by", "your name is required: every change records who made it")


# ------------------------------------------------------------------ documents
def rule_yaml(doc: Mapping[str, Any]) -> str:
    """One rule as block YAML (a changed field is a changed line)."""
    clean = {k: v for k, v in doc.items() if k != "open"}
    return yaml.safe_dump(clean, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def parse_rule_yaml(text: str) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """YAML text of ONE rule (a mapping; a one-rule ``rules:`` list is accepted) → (document, errors)."""
    try:
        loaded = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        return None, [FieldError(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]
    if isinstance(loaded, Mapping) and set(loaded) == {"rules"} and isinstance(loaded["rules"], list):
        if len(loaded["rules"]) != 1:
            return None, [FieldError("rules", "give exactly one rule on this page")]
        loaded = loaded["rules"][0]
    if not isinstance(loaded, Mapping):
        return None, [FieldError("rule", "must be a mapping of rule fields (name, query, op, threshold, …)")]
    return dict(loaded), []


def canonical_rule(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one rule exactly like the YAML import and return its stored form.
    Raises ``AlertRuleRefused`` naming every bad field (``rule.op``, ``rule.query.window`` …)."""
    try:
        return rule_to_dict(parse_rule(dict(doc), "rule"))
    except AlertConfigError as exc:
        raise _refuse(exc) from exc


def validate(doc: Mapping[str, Any]) -> list[FieldError]:
    try:
        canonical_rule(doc)
    except AlertRuleRefused as exc:
        return exc.errors
    return []


def _stored(doc: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not doc:
        return doc
    try:
        return canonical_rule({k: v for k, v in doc.items() if k != "open"})
    except AlertRuleRefused:
        return doc  # shown as given: the page names its errors


def diff(current: Mapping[str, Any] | None, proposed: Mapping[str, Any] | None) -> str:
    """Unified YAML diff of the rule in force → the proposed one (empty when equal), both in their
    stored form: defaults the store fills in (``enabled: true``) are not shown as changes."""
    current, proposed = _stored(current), _stored(proposed)
    old = rule_yaml(current) if current else ""
    new = rule_yaml(proposed) if proposed else ""
    name = (proposed or current or {}).get("name", "rule")
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{name} (in force)" if current else "(no rule)",
            tofile=f"{name} (proposed)" if proposed else "(deleted)",
        )
    )


# ------------------------------------------------------------------ use cases
def list_rules(port: AlertRulesPort) -> list[dict[str, Any]]:
    return sorted(port.rules(), key=lambda r: r["name"])


def save(
    port: AlertRulesPort,
    doc: Mapping[str, Any],
    *,
    by: str,
    why: str,
    original: str | None = None,
) -> dict[str, Any]:
    """Create (``original`` None) or replace the rule ``original`` with ``doc`` (a rename removes the old
    name in the same version). Returns ``{"version", "rule", "changed"}``."""
    who = need_name(by)
    rule = canonical_rule(doc)
    why = why.strip() or f"rule {rule['name']} {'created' if original is None else 'edited'} in the console"
    try:
        existing = {r["name"]: {k: v for k, v in r.items() if k != "open"} for r in port.rules()}
        if original is None and rule["name"] in existing:
            raise AlertRuleRefused(
                [FieldError("rule.name", f"a rule named {rule['name']!r} already exists: edit it instead")]
            )
        if original is not None and original != rule["name"]:
            if rule["name"] in existing:
                raise AlertRuleRefused(
                    [FieldError("rule.name", f"a rule named {rule['name']!r} already exists")]
                )
            others = [d for n, d in existing.items() if n != original]
            out = port.apply({"rules": [*others, rule]}, by=who, why=why, prune=True)
        else:
            out = port.apply({"rules": [rule]}, by=who, why=why)
    except AlertRuleRefused:
        raise
    except Exception as exc:  # AlertConfigError names the field; a store error says what failed
        raise _refuse(exc) from exc
    changed = bool(
        out.get("rules", {}).get("added") or out.get("rules", {}).get("changed") or original != rule["name"]
    )
    return {"version": out.get("version"), "rule": rule, "changed": changed}


def set_enabled(port: AlertRulesPort, name: str, enabled: bool, *, by: str, why: str) -> dict[str, Any]:
    who = need_name(by)
    try:
        return port.set_rule_enabled(name, enabled, by=who, why=why)
    except Exception as exc:
        raise _refuse(exc) from exc


def delete(port: AlertRulesPort, name: str, *, by: str, why: str) -> None:
    who = need_name(by)
    try:
        port.delete_rule(name, by=who, why=why)
    except Exception as exc:
        raise _refuse(exc) from exc


def history(port: AlertRulesPort, limit: int = 100) -> list[dict[str, Any]]:
    return port.rule_history(limit=limit)


def rollback(port: AlertRulesPort, version: int, *, by: str, why: str) -> dict[str, Any]:
    who = need_name(by)
    try:
        return port.rollback_rules(version, by=who, why=why)
    except Exception as exc:
        raise _refuse(exc) from exc


def backtest(
    port: AlertRulesPort, doc: Mapping[str, Any], *, hours: float, interval_s: int, now: datetime
) -> dict[str, Any]:
    """The proposed rule and the rule in force replayed over the last ``hours`` of recorded metrics."""
    from datetime import timedelta

    rule = canonical_rule(doc)
    try:
        return port.backtest(rule, start=now - timedelta(hours=hours), end=now, interval_s=interval_s)
    except Exception as exc:
        raise _refuse(exc) from exc


def version_diff_lines(diff: Mapping[str, Any]) -> list[str]:
    """A version's diff in one line per rule: ``+ name``, ``- name``, ``~ name: field a → b``."""
    out = [f"+ {d['name']}" for d in diff.get("added", [])]
    out += [f"- {d['name']}" for d in diff.get("removed", [])]
    for c in diff.get("changed", []):
        before, after = c["before"], c["after"]
        fields = [
            f"{k}: {before.get(k)!r} → {after.get(k)!r}"
            for k in dict.fromkeys([*before, *after])
            if before.get(k) != after.get(k)
        ]
        out.append(f"~ {c['name']}: " + "; ".join(fields))
    return out
