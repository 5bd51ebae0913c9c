"""Rule form helpers: error paths onto fields, form values into rules, YAML lines, impact proposals."""

from __future__ import annotations

from types import UnionType
from typing import Union, get_args, get_origin

from console.rule_forms import (
    FIELDS,
    errors_for,
    place,
    proposal_from_rule,
    rule_from_values,
    table_rows,
    yaml_line,
)
from console.services import FieldError
from dashboards.impact import FlowProposal, ParamProposal
from guardians import parse_document
from guardians.flow.rule import FIELDS as FLOW_FIELDS
from guardians.schema import MODELS


def test_error_paths_land_on_their_field():
    assert place("flow[2].threshold") == place("flow.2.threshold")
    assert (place("flow[2].threshold").kind, place("flow[2].threshold").index) == ("flow", 2)
    assert place("param[0].exceptions.SKU-1").field == "exceptions"
    errors = [
        FieldError("flow[0].threshold", "must be > 0"),
        FieldError("flow[0].bogus", "unknown field"),
        FieldError("flow[1].grade", "x"),
        FieldError("breaker[0].threshold", "y"),
    ]
    per_field, rest = errors_for(errors, "flow", 0)
    assert per_field == {"threshold": ["must be > 0"]}
    assert rest == ["flow[0].bogus: unknown field"]


def test_rule_from_values_drops_empty_optionals_and_keeps_unknown_fields():
    values = {
        "resource": " order.place ",
        "threshold": 50.0,
        "grade": "qps",
        "warm_up_s": None,
        "cluster": False,
        "name": "",
        "behavior": "reject",
        "strategy": "direct",
    }
    rule = rule_from_values("flow", values, {"resource": "order.place", "extra": 1})
    assert rule == {
        "extra": 1,
        "resource": "order.place",
        "threshold": 50,
        "grade": "qps",
        "behavior": "reject",
        "strategy": "direct",
    }
    assert isinstance(rule["threshold"], int)


def test_form_fields_cover_every_flow_field_of_guardians():
    assert {f.name for f in FIELDS["flow"]} == set(FLOW_FIELDS)


def test_yaml_line_points_at_the_field():
    text = "flow:\n  - resource: a\n    threshold: 0\n  - {resource: b, threshold: 1}\n"
    assert yaml_line(text, "flow[0].threshold") == 3
    assert yaml_line(text, "flow[1].threshold") == 4
    assert yaml_line(text, "breaker[0].x") is None


def test_proposals_from_rules():
    assert proposal_from_rule("flow", {"threshold": 5, "grade": "concurrency"})[0] == FlowProposal(
        threshold=5, grade="concurrency"
    )
    assert proposal_from_rule("flow", {"threshold": 5, "strategy": "relate"})[0] is None
    assert proposal_from_rule("param", {"threshold": 10, "duration_s": 2, "burst": 3}, hot_share=0.5)[
        0
    ] == ParamProposal(threshold=5, burst=3, hot_share=0.5)
    assert proposal_from_rule("breaker", {"threshold": 0.5})[0] is None
    assert proposal_from_rule("flow", {})[1] == "the rule has no numeric threshold yet"


def test_table_rows_use_one_column_order():
    rows = table_rows([{"threshold": 5, "resource": "a", "name": "n", "exceptions": {"x": 1}}], "param")
    assert list(rows[0]) == ["name", "resource", "threshold", "exceptions"]
    assert rows[0]["exceptions"] == '{"x": 1}'


def test_form_fields_choices_and_defaults_come_from_the_models():
    for kind, model in MODELS.items():
        specs = {f.name: f for f in FIELDS[kind]}
        assert list(specs) == list(model.model_fields), kind
        for name, info in model.model_fields.items():
            spec = specs[name]
            assert spec.required == info.is_required(), (kind, name)
            expected = None if info.is_required() else info.default
            assert spec.default == expected, (kind, name)
            if spec.kind == "select":
                assert spec.options == get_args(_strip(info.annotation)), (kind, name)


def _strip(tp):
    args = [a for a in get_args(tp) if a is not type(None)]
    return args[0] if get_origin(tp) in (Union, UnionType) else tp


def test_system_strategy_left_to_the_model_in_the_form_and_the_parser():
    """The form used to preselect strategy plain while a rule without one loads as bbr for load."""
    spec = next(f for f in FIELDS["system"] if f.name == "strategy")
    assert spec.default is None and not spec.required  # the widget shows "(default)", nothing preselected
    assert "bbr when metric is load" in spec.help
    for metric, expected in (("load", "bbr"), ("cpu", "plain"), ("qps", "plain")):
        values = {"metric": metric, "threshold": 0.5, "strategy": spec.default, "name": ""}
        rule = rule_from_values("system", values)
        assert "strategy" not in rule
        assert parse_document({"system": [rule]}).system[0].strategy == expected


def test_form_help_names_the_bounds_of_the_model():
    spec = next(f for f in FIELDS["breaker"] if f.name == "stat_interval_ms")
    assert (spec.ge, spec.le) == (500, 60_000)
    assert "≥ 500, ≤ 60000" in spec.help and "default: 1000" in spec.help
