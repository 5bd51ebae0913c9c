"""Rule documents: a mapping of rule type → list of rules, in YAML or JSON.

``parse_document`` validates a whole document and returns a ``RuleSet``; if any
rule is invalid it raises ``RuleValidationError`` listing every (path, message)
— a document is applied whole or not at all. ``RuleSet.to_document()`` is the
canonical form (defaults filled in) that the rule store keeps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from guardians.breaker.rule import BreakerRule, parse_breaker
from guardians.degrade.rule import DegradeRule, parse_degrade
from guardians.errors import RuleValidationError
from guardians.flow.rule import FlowRule, parse_flow
from guardians.param.rule import ParamRule, parse_param
from guardians.system.rule import SystemRule, parse_system

RULE_TYPES = ("flow", "breaker", "system", "param", "degrade")
MAX_RULES = 100_000

_PARSERS = {
    "flow": parse_flow,
    "breaker": parse_breaker,
    "system": parse_system,
    "param": parse_param,
    "degrade": parse_degrade,
}


@dataclass(frozen=True)
class RuleSet:
    flow: tuple[FlowRule, ...] = ()
    breaker: tuple[BreakerRule, ...] = ()
    system: tuple[SystemRule, ...] = ()
    param: tuple[ParamRule, ...] = ()
    degrade: tuple[DegradeRule, ...] = ()

    @classmethod
    def empty(cls) -> RuleSet:
        return cls()

    def __len__(self) -> int:
        return len(self.flow) + len(self.breaker) + len(self.system) + len(self.param) + len(self.degrade)

    def to_document(self) -> dict[str, list[dict[str, Any]]]:
        return {t: [r.to_dict() for r in getattr(self, t)] for t in RULE_TYPES}

    def resources(self) -> set[str]:
        out: set[str] = set()
        for t in ("flow", "breaker", "param", "degrade"):
            out.update(r.resource for r in getattr(self, t))
        out.update(r.ref_resource for r in self.flow if r.ref_resource)
        return out


def parse_document(doc: Any) -> RuleSet:
    """Validate a rule document (a mapping) into a RuleSet, or raise RuleValidationError."""
    errors: list[tuple[str, str]] = []
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise RuleValidationError(
            [
                (
                    "$",
                    f"must be a mapping of rule type ({', '.join(RULE_TYPES)}) to a list "
                    f"of rules, got {type(doc).__name__}",
                )
            ]
        )
    parsed: dict[str, list[Any]] = {t: [] for t in RULE_TYPES}
    total = 0
    for key, rules in doc.items():
        if key not in _PARSERS:
            errors.append((str(key), f"unknown rule type; allowed: {', '.join(RULE_TYPES)}"))
            continue
        if rules is None:
            continue
        if not isinstance(rules, list | tuple):
            errors.append((key, f"must be a list of {key} rules, got {type(rules).__name__}"))
            continue
        total += len(rules)
        if total > MAX_RULES:
            errors.append((key, f"too many rules: at most {MAX_RULES} in a document"))
            break
        for i, raw in enumerate(rules):
            rule = _PARSERS[key](raw, f"{key}[{i}]", errors)
            if rule is not None:
                parsed[key].append(rule)
    if errors:
        raise RuleValidationError(errors)
    return RuleSet(**{t: tuple(v) for t, v in parsed.items()})


def load_text(text: str) -> Any:
    """Read a YAML or JSON rule document (JSON is YAML, but give JSON's error for JSON-looking input)."""
    stripped = text.lstrip()
    try:
        if stripped.startswith("{") or stripped.startswith("["):
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RuleValidationError([("$", f"not valid YAML or JSON: {exc}")]) from exc


def parse_text(text: str) -> RuleSet:
    return parse_document(load_text(text))


def dump_yaml(doc: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=None, width=120)


def dump_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)


def canonical(doc: Any) -> dict[str, list[dict[str, Any]]]:
    """Validated canonical form of a document (defaults filled in, names assigned)."""
    return parse_document(doc).to_document()


def diff_documents(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """Per rule type, the rules added and removed (by canonical JSON); unchanged types omitted."""
    old = old or {}
    out: dict[str, dict[str, list[Any]]] = {}
    for t in RULE_TYPES:
        a = [json.dumps(r, sort_keys=True) for r in old.get(t, []) or []]
        b = [json.dumps(r, sort_keys=True) for r in new.get(t, []) or []]
        added = [json.loads(r) for r in b if r not in a]
        removed = [json.loads(r) for r in a if r not in b]
        if added or removed:
            out[t] = {"added": added, "removed": removed}
    return out
