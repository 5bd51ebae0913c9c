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
from pydantic import ValidationError

from guardians._validate import document_errors
from guardians.authority.rule import AuthorityRule
from guardians.breaker.rule import BreakerRule
from guardians.degrade.rule import DegradeRule
from guardians.errors import RuleValidationError
from guardians.flow.rule import FlowRule
from guardians.param.rule import ParamRule
from guardians.schema import MAX_RULES, RULE_TYPES, RuleDocument
from guardians.system.rule import SystemRule

_COMPILE: dict[str, Any] = {
    "flow": FlowRule.from_model,
    "breaker": BreakerRule.from_model,
    "system": SystemRule.from_model,
    "param": ParamRule.from_model,
    "degrade": DegradeRule.from_model,
    "authority": AuthorityRule.from_model,
}


@dataclass(frozen=True)
class RuleSet:
    flow: tuple[FlowRule, ...] = ()
    breaker: tuple[BreakerRule, ...] = ()
    system: tuple[SystemRule, ...] = ()
    param: tuple[ParamRule, ...] = ()
    degrade: tuple[DegradeRule, ...] = ()
    authority: tuple[AuthorityRule, ...] = ()

    @classmethod
    def empty(cls) -> RuleSet:
        return cls()

    def __len__(self) -> int:
        return sum(len(getattr(self, t)) for t in RULE_TYPES)

    def to_document(self) -> dict[str, list[dict[str, Any]]]:
        return {t: [r.to_dict() for r in getattr(self, t)] for t in RULE_TYPES}

    def resources(self) -> list[str]:
        """Every resource the rules name, once each, in document order (flow, breaker, param, degrade,
        authority, then referenced resources)."""
        out: dict[str, None] = {}
        for t in ("flow", "breaker", "param", "degrade", "authority"):
            out.update(dict.fromkeys(r.resource for r in getattr(self, t)))
        out.update(dict.fromkeys(r.ref_resource for r in self.flow if r.ref_resource))
        return list(out)


def parse_document(doc: Any) -> RuleSet:
    """Validate a rule document (a mapping) through ``guardians.schema.RuleDocument`` into a
    RuleSet (the compiled rules the engine reads), or raise RuleValidationError."""
    if doc is None:
        doc = {}
    if isinstance(doc, Mapping):
        total = 0
        for key, rules in doc.items():
            total += len(rules) if isinstance(rules, list | tuple) else 0
            if total > MAX_RULES:
                raise RuleValidationError([(str(key), f"too many rules: at most {MAX_RULES} in a document")])
        doc = {k: list(v) if isinstance(v, tuple) else v for k, v in doc.items()}
    try:
        model = RuleDocument.model_validate(doc)
    except ValidationError as exc:
        raise RuleValidationError(document_errors(exc)) from None
    return RuleSet(**{t: tuple(_COMPILE[t](m) for m in (getattr(model, t) or ())) for t in RULE_TYPES})


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
