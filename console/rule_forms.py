"""Form fields of every guardians rule type, and mapping validation errors back onto them.

Pure (no Streamlit): the Rules page renders one widget per ``FieldSpec`` and puts each
``FieldError`` whose path names that field right under the widget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from console.services import FieldError
from guardians.schema import MODELS, FieldFacts, MustBe, OnlyWith, RuleModel, conditional_default, fields_of

Kind = Literal["text", "select", "number", "int", "bool", "mapping"]


@dataclass(frozen=True)
class FieldSpec:
    """One form widget, read from the rule's model in ``guardians.schema`` (never written by hand)."""

    name: str
    kind: Kind
    help: str = ""
    options: tuple[str, ...] = ()
    required: bool = False
    default: Any = None  # preselected / shown value; None: left empty, the model decides
    gt: float | None = None
    ge: float | None = None
    le: float | None = None


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() and abs(v) < 1e9 else f"{v:g}"


def _help(model: type[RuleModel], f: FieldFacts) -> str:
    bits = [f.description]
    rng = [f"{op} {_num(b)}" for op, b in ((">", f.gt), ("≥", f.ge), ("≤", f.le)) if b is not None]
    if rng:
        bits.append(", ".join(rng))
    cond = conditional_default(model, f.name)
    if cond:
        bits.append(f"default: {cond}")
    elif not f.required and f.default is not None and f.type != "bool":
        bits.append(f"default: {_num(f.default) if isinstance(f.default, float) else f.default}")
    return " · ".join(b.replace("`", "") for b in bits if b)


def _spec(model: type[RuleModel], f: FieldFacts) -> FieldSpec:
    return FieldSpec(
        name=f.name,
        kind=f.type,  # type: ignore[arg-type]
        help=_help(model, f),
        options=f.options,
        required=f.required,
        default=f.default,
        gt=f.gt,
        ge=f.ge,
        le=f.le,
    )


# The fields of guardians' rule types, in the models' (the form's) order.
FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    kind: tuple(_spec(model, f) for f in fields_of(model)) for kind, model in MODELS.items()
}

_PATH = re.compile(
    r"^\s*(?P<kind>[a-z_]+)\s*(?:\[(?P<i1>\d+)\]|\.(?P<i2>\d+))?(?:\s*\.\s*(?P<field>[A-Za-z_][\w]*))?"
)


@dataclass(frozen=True)
class ErrorPlace:
    kind: str | None
    index: int | None
    field: str | None


def place(path: str) -> ErrorPlace:
    """Where an error path points: ``flow[0].threshold`` / ``flow.0.threshold`` → (flow, 0, threshold)."""
    m = _PATH.match(path or "")
    if not m:
        return ErrorPlace(None, None, None)
    index = m.group("i1") or m.group("i2")
    return ErrorPlace(m.group("kind"), int(index) if index is not None else None, m.group("field"))


def errors_for(
    errors: Sequence[FieldError], kind: str, index: int | None
) -> tuple[dict[str, list[str]], list[str]]:
    """(errors per field of rule ``kind[index]``, errors of that rule not tied to a known field)."""
    per_field: dict[str, list[str]] = {}
    rest: list[str] = []
    names = {f.name for f in FIELDS.get(kind, ())}
    for e in errors:
        p = place(e.path)
        if p.kind != kind or p.index != index:
            continue
        if p.field in names:
            per_field.setdefault(p.field or "", []).append(e.message)
        else:
            rest.append(f"{e.path}: {e.message}")
    return per_field, rest


def rule_from_values(
    kind: str, values: Mapping[str, Any], original: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A rule mapping from form values: empty optional fields are left out, unknown fields of the
    original rule are kept, whole numbers stay ints."""
    rule: dict[str, Any] = {}
    known = {f.name for f in FIELDS[kind]}
    for k, v in (original or {}).items():
        if k not in known:
            rule[k] = v
    for spec in FIELDS[kind]:
        v = values.get(spec.name)
        if v is None or v == "" or (spec.kind == "bool" and v is False and spec.name not in (original or {})):
            continue
        if spec.kind == "mapping" and isinstance(v, Mapping) and not v:
            continue
        if spec.kind in ("number", "int") and isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, str):
            v = v.strip()
            if not v:
                continue
        rule[spec.name] = v
    return rule


def label(kind: str, index: int, rule: Mapping[str, Any]) -> str:
    """A short, readable name of a rule for pickers: ``#0 order.place · qps 200 · warm_up``."""
    bits = [f"#{index}", str(rule.get("resource", "node" if kind == "system" else "?"))]
    if kind == "flow":
        bits.append(f"{rule.get('grade', 'qps')} {rule.get('threshold', '?')}")
        if rule.get("behavior") not in (None, "reject"):
            bits.append(str(rule["behavior"]))
    elif kind == "breaker":
        bits.append(f"{rule.get('strategy', '?')} {rule.get('threshold', '?')}")
    elif kind == "param":
        bits.append(f"{rule.get('param', '?')} ≤ {rule.get('threshold', '?')}/s")
    elif kind == "degrade":
        bits.append(f"→ {rule.get('fallback', '?')}")
    elif kind == "system":
        bits = [f"#{index}", f"{rule.get('metric', '?')} ≤ {rule.get('threshold', '?')}"]
        if rule.get("strategy") == "bbr":
            bits.append("bbr")
    return " · ".join(bits)


def table_rows(rules: Sequence[Mapping[str, Any]], kind: str | None = None) -> list[dict[str, Any]]:
    """Rules as table rows, columns in one order for every rule of a type (name first, then the
    form's order); nested values (exception maps) shown as compact JSON."""
    import json

    order = ["name", *(f.name for f in FIELDS.get(kind or "", ()) if f.name != "name")]
    present = {k for rule in rules for k in rule}
    columns = [c for c in order if c in present] + sorted(present - set(order))
    rows = []
    for rule in rules:
        row = {}
        for k in columns:
            v = rule.get(k)
            row[k] = v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v, default=str)
        rows.append(row)
    return rows


def proposal_from_rule(kind: str, rule: Mapping[str, Any], *, hot_share: float = 1.0):
    """The impact-preview proposal of a flow or param rule, or (None, why not)."""
    from dashboards.impact import FlowProposal, ParamProposal

    try:
        threshold = float(rule.get("threshold"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, "the rule has no numeric threshold yet"
    try:
        if kind == "flow":
            strategy = rule.get("strategy", "direct")
            if strategy not in (None, "direct"):
                return (
                    None,
                    f"strategy {strategy} depends on another resource's or origin's load; "
                    "only direct rules can be replayed",
                )
            if rule.get("behavior") == "adaptive":
                return None, "an adaptive limit follows latency at run time; it cannot be replayed"
            grade = rule.get("grade", "qps")
            return FlowProposal(threshold=threshold, grade=grade, cluster=bool(rule.get("cluster"))), None
        if kind == "param":
            duration = float(rule.get("duration_s") or 1)
            burst = float(rule.get("burst") or 0)
            return ParamProposal(threshold=threshold / duration, burst=burst, hot_share=hot_share), None
    except ValueError as exc:
        return None, str(exc)
    return None, f"{kind} rules have no impact preview (only flow and param)"


def yaml_line(text: str, path: str) -> int | None:
    """The 1-based line of the YAML node an error path points to (the rule's field, else the rule)."""
    import yaml

    p = place(path)
    if p.kind is None:
        return None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None

    def child(node, key):  # type: ignore[no-untyped-def]
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if getattr(k, "value", None) == key:
                    return k, v
        return None, None

    key_node, node = child(root, p.kind)
    if node is None:
        return None
    line = key_node.start_mark.line
    if p.index is not None and isinstance(node, yaml.SequenceNode) and p.index < len(node.value):
        item = node.value[p.index]
        line = item.start_mark.line
        if p.field:
            fk, _ = child(item, p.field)
            if fk is not None:
                line = fk.start_mark.line
    return line + 1


# ------------------------------------------------------------------ which fields apply
OTHER_RESOURCE = "other…"
RESOURCE_FIELDS: frozenset[str] = frozenset({"resource", "ref_resource"})


def _constraints(kind: str) -> tuple[Any, ...]:
    model = MODELS.get(kind)
    return tuple(getattr(model, "CONSTRAINTS", ())) if model else ()


def controlling_fields(kind: str) -> tuple[str, ...]:
    """The fields whose value decides whether other fields apply (the conditions of the model's
    "only allowed with" / "must be" rules), in the form's order: the page renders them so that
    changing one re-draws the form at once."""
    names: set[str] = set()
    for c in _constraints(kind):
        if isinstance(c, OnlyWith | MustBe):
            names.update(c.when)
    return tuple(f.name for f in FIELDS.get(kind, ()) if f.name in names)


def effective_values(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Form values with the model's default for every field left empty."""
    out: dict[str, Any] = {}
    for spec in FIELDS.get(kind, ()):
        v = values.get(spec.name)
        out[spec.name] = spec.default if v is None or v == "" else v
    return out


def _holds(when: Mapping[str, tuple[Any, ...]], values: Mapping[str, Any]) -> bool:
    return all(values.get(f) in vs for f, vs in when.items())


def hidden_fields(kind: str, values: Mapping[str, Any]) -> frozenset[str]:
    """Fields that do not apply to a rule with ``values`` (read from ``guardians.schema``'s rules
    between fields): a field "only allowed with" a condition that does not hold, and an optional
    field that "must be" one value, its default, under a condition that holds (nothing to choose)."""
    eff = effective_values(kind, values)
    specs = {f.name: f for f in FIELDS.get(kind, ())}
    hidden: set[str] = set()
    for c in _constraints(kind):
        spec = specs.get(c.field)
        if spec is None:
            continue
        if (isinstance(c, OnlyWith) and not _holds(c.when, eff)) or (
            isinstance(c, MustBe)
            and not spec.required
            and len(c.values) == 1
            and _holds(c.when, eff)
            and (spec.default == c.values[0] or conditional_value(kind, c.field, eff) == c.values[0])
        ):
            hidden.add(c.field)
    return frozenset(hidden)


def conditional_value(kind: str, name: str, values: Mapping[str, Any]) -> Any:
    """The model's conditional default of ``name`` for ``values`` (None when none applies)."""
    for d in getattr(MODELS.get(kind), "DEFAULTS", ()):
        if d.field == name and _holds(d.when, values):
            return d.value
    return None


def resource_options(known: Sequence[str], current: str | None) -> list[str]:
    """The resource picker's choices: known resources (sorted), the rule's own resource if it is not
    one of them, then "other…" for a name typed by hand."""
    options = sorted(dict.fromkeys(known))
    if current and current not in options:
        options.append(current)
    return [*options, OTHER_RESOURCE]


def unknown_resource_warning(name: str, known: Sequence[str]) -> str | None:
    """A warning when ``name`` is neither a core resource nor one with recorded traffic."""
    name = (name or "").strip()
    if not name or name in known:
        return None
    close = [k for k in known if _close(name, k)]
    hint = f" Did you mean {', '.join(f'`{k}`' for k in close)}?" if close else ""
    return (
        f"`{name}` is not a known resource: no traffic was recorded for it and the trading core has no "
        f"resource of that name, so a rule on it guards nothing.{hint}"
    )


def _close(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8
