"""Pydantic's validation errors of the rule models (``guardians.schema``) as (path, message) pairs.

A path names the field the way a document spells it (``flow[0].threshold``,
``param[0].exceptions.SKU-1``) and the message says what is wrong and what is allowed, read
from the model's field (``must be a number > 0 and <= 1e+12, got -1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from guardians.schema import MODELS, RULE_TYPES, FieldFacts, RuleModel, allowed_text, field_of

Errors = list[tuple[str, str]]


def _fmt(v: Any) -> str:
    return f"'{v}'" if isinstance(v, str) else repr(v)


def _got(v: Any) -> str:
    return _fmt(v) if isinstance(v, str | int | float | bool) or v is None else type(v).__name__


def field_message(f: FieldFacts, error: dict[str, Any]) -> str:
    """The message of a pydantic error on one field of a rule model."""
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        if f.type == "select":
            return f"is required; allowed values: {', '.join(f.options)}"
        return f"is required ({allowed_text(f)})"
    if f.type == "text":
        if kind == "string_too_long":
            return f"must be at most {f.max_length} characters"
        if kind == "string_pattern_mismatch":
            return f"must be {allowed_text(f)}, got {_got(value)}: {f.description.replace('`', '')}"
        return f"must be a non-empty string, got {_got(value)}"
    if f.type == "mapping" and kind in ("dict_type", "mapping_type"):
        return f"must be {allowed_text(f)}, got {_got(value)}"
    return f"must be {allowed_text(f)}, got {_got(value)}"


def _fields(model: type[RuleModel]) -> str:
    return ", ".join(model.model_fields)


def rule_errors(model: type[RuleModel], error: dict[str, Any], path: str, loc: Sequence[Any]) -> Errors:
    """(path, message) of one pydantic error at ``loc`` inside a rule of type ``model``."""
    kind = error["type"]
    if not loc:
        if kind == "rule_conflicts":
            return [(f"{path}.{field}", message) for field, message in error["ctx"]["errors"]]
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            got = type(error.get("input")).__name__
            return [(path, f"must be a mapping of fields ({_fields(model)}), got {got}")]
        return [(path, error["msg"])]
    name = str(loc[0])
    if kind == "extra_forbidden" or name not in model.model_fields:
        return [(f"{path}.{name}", f"unknown field; allowed fields: {_fields(model)}")]
    f = field_of(model, name)
    if len(loc) == 1:
        return [(f"{path}.{name}", field_message(f, error))]
    # inside a mapping field (param exceptions): loc = (field, key) or (field, key, "[key]")
    if loc[-1] == "[key]":
        return [
            (
                f"{path}.{name}",
                f"keys must be parameter values (non-empty strings), got {_got(error.get('input'))}",
            )
        ]
    assert f.value is not None
    return [(f"{path}.{name}.{loc[1]}", field_message(f.value, error))]


def document_errors(exc: ValidationError) -> Errors:
    """(path, message) of every error of a ``RuleDocument`` validation."""
    out: Errors = []
    for error in exc.errors():
        loc = error["loc"]
        kind = error["type"]
        if not loc:
            got = type(error.get("input")).__name__
            out.append(
                (
                    "$",
                    f"must be a mapping of rule type ({', '.join(RULE_TYPES)}) to a list of rules, got {got}",
                )
            )
            continue
        key = loc[0]
        if key not in MODELS or (kind == "extra_forbidden" and len(loc) == 1):
            out.append((str(key), f"unknown rule type; allowed: {', '.join(RULE_TYPES)}"))
            continue
        if len(loc) == 1:
            got = type(error.get("input")).__name__
            out.append((str(key), f"must be a list of {key} rules, got {got}"))
            continue
        out.extend(rule_errors(MODELS[key], error, f"{key}[{loc[1]}]", loc[2:]))
    return out
