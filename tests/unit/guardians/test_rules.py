import dataclasses
import functools
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardians import Blocked, RuleValidationError, parse_document
from guardians.breaker.rule import BreakerRule
from guardians.flow.rule import FlowRule
from guardians.param.rule import ParamRule
from guardians.rules import RULE_TYPES, canonical, diff_documents, dump_yaml, load_text, parse_text
from guardians.schema import MODELS, RULES_MD, document_json_schema, reference_markdown, render_rules_md

from .helpers import engine

INVALID = [
    # (document, expected path, words the message must contain)
    ({"flow": [{"resource": "r", "threshold": 10, "grade": "rps"}]}, "flow[0].grade", "qps, concurrency"),
    ({"flow": [{"resource": "r"}]}, "flow[0].threshold", "required"),
    ({"flow": [{"resource": "r", "threshold": -1}]}, "flow[0].threshold", "> 0"),
    ({"flow": [{"resource": "r", "threshold": "many"}]}, "flow[0].threshold", "a number"),
    ({"flow": [{"threshold": 5}]}, "flow[0].resource", "required"),
    (
        {"flow": [{"resource": "r", "threshold": 5, "behavior": "fast"}]},
        "flow[0].behavior",
        "reject, warm_up, queue, warm_up_queue, adaptive",
    ),
    ({"flow": [{"resource": "r", "threshold": 5, "strategy": "relate"}]}, "flow[0].ref_resource", "required"),
    ({"flow": [{"resource": "r", "threshold": 5, "strategy": "chain"}]}, "flow[0].ref_resource", "required"),
    (
        {"flow": [{"resource": "r", "threshold": 5, "strategy": "sideways"}]},
        "flow[0].strategy",
        "direct, relate, chain",
    ),
    ({"flow": [{"resource": "r", "threshold": 5, "warm_up_s": 10}]}, "flow[0].warm_up_s", "warm_up"),
    (
        {"flow": [{"resource": "r", "threshold": 5, "behavior": "queue", "max_queue_ms": -5}]},
        "flow[0].max_queue_ms",
        ">= 0",
    ),
    ({"flow": [{"resource": "r", "threshold": 5, "behavior": "adaptive"}]}, "flow[0].grade", "concurrency"),
    (
        {"flow": [{"resource": "r", "threshold": 5, "grade": "concurrency", "behavior": "warm_up"}]},
        "flow[0].behavior",
        "reject, adaptive",
    ),
    ({"flow": [{"resource": "r", "threshold": 5, "burst": 3}]}, "flow[0].burst", "allowed fields"),
    (
        {
            "flow": [
                {
                    "resource": "r",
                    "threshold": 5,
                    "strategy": "relate",
                    "ref_resource": "x",
                    "behavior": "queue",
                }
            ]
        },
        "flow[0].behavior",
        "must be reject",
    ),
    (
        {
            "flow": [
                {"resource": "r", "threshold": 5, "strategy": "chain", "origin": "o", "grade": "concurrency"}
            ]
        },
        "flow[0].grade",
        "must be qps",
    ),
    (
        {"breaker": [{"resource": "p", "strategy": "error_ratio", "threshold": 1.5}]},
        "breaker[0].threshold",
        "<= 1",
    ),
    (
        {"breaker": [{"resource": "p", "strategy": "slow_ratio", "threshold": 0.5}]},
        "breaker[0].max_rt_ms",
        "required",
    ),
    (
        {"breaker": [{"resource": "p", "strategy": "timeouts", "threshold": 1}]},
        "breaker[0].strategy",
        "slow_ratio, error_ratio, error_count",
    ),
    (
        {"breaker": [{"resource": "p", "strategy": "error_count", "threshold": 2.5}]},
        "breaker[0].threshold",
        "an integer",
    ),
    (
        {"breaker": [{"resource": "p", "strategy": "error_count", "threshold": 2, "probes": 0}]},
        "breaker[0].probes",
        ">= 1",
    ),
    (
        {"breaker": [{"resource": "p", "strategy": "error_count", "threshold": 2, "min_requests": True}]},
        "breaker[0].min_requests",
        "an integer",
    ),
    ({"system": [{"metric": "cpu", "threshold": 80}]}, "system[0].threshold", "<= 1"),
    (
        {"system": [{"metric": "memory", "threshold": 1}]},
        "system[0].metric",
        "qps, concurrency, avg_rt, cpu, load",
    ),
    ({"system": [{"metric": "qps", "threshold": 10, "strategy": "bbr"}]}, "system[0].strategy", "plain"),
    ({"param": [{"resource": "r", "threshold": 5}]}, "param[0].param", "required"),
    (
        {"param": [{"resource": "r", "param": "sku", "threshold": 5, "exceptions": {"A": -1}}]},
        "param[0].exceptions.A",
        ">= 0",
    ),
    (
        {"param": [{"resource": "r", "param": "sku", "threshold": 5, "exceptions": [1, 2]}]},
        "param[0].exceptions",
        "mapping",
    ),
    ({"degrade": [{"resource": "r", "fallback": "no spaces!"}]}, "degrade[0].fallback", "register_fallback"),
    ({"limits": []}, "limits", "flow, breaker, system, param, degrade"),
    ({"flow": {"resource": "r"}}, "flow", "list"),
    ({"flow": ["not a mapping"]}, "flow[0]", "mapping"),
    (["flow"], "$", "mapping"),
]


@pytest.mark.parametrize(("doc", "path", "words"), INVALID)
def test_invalid_rules_name_the_field_and_allowed_values(doc, path, words):
    with pytest.raises(RuleValidationError) as info:
        parse_document(doc)
    errors = dict(info.value.errors)
    assert path in errors, info.value.errors
    assert words in errors[path]


def test_one_invalid_rule_rejects_the_whole_document():
    eng, _ = engine({"flow": [{"resource": "r", "threshold": 1}]})
    bad = {
        "flow": [{"resource": "r", "threshold": 100}, {"resource": "s", "threshold": 0}],
        "breaker": [{"resource": "p", "strategy": "nope"}],
    }
    with pytest.raises(RuleValidationError) as info:
        eng.apply(parse_document(bad))
    paths = [p for p, _ in info.value.errors]
    assert "flow[1].threshold" in paths and "breaker[0].strategy" in paths
    assert eng.ruleset.flow[0].threshold == 1  # the old rules stay in force


def test_issue_example_document_parses_and_round_trips():
    text = """
flow:
  - {resource: order.place, grade: qps, threshold: 200, behavior: warm_up, warm_up_s: 10}
breaker:
  - {resource: payment.charge, strategy: error_ratio, threshold: 0.5, min_requests: 10,
     stat_interval_ms: 1000, recovery_s: 10}
system: []
param:
  - {resource: order.place, param: sku, threshold: 50}
degrade:
  - {resource: payment.charge, fallback: queue_payment}
"""
    rs = parse_text(text)
    assert rs.flow[0].warm_up_s == 10 and rs.flow[0].cold_factor == 3
    assert rs.breaker[0].min_requests == 10 and rs.breaker[0].probes == 1
    doc = rs.to_document()
    assert parse_document(doc) == rs
    assert parse_document(json.loads(json.dumps(doc))) == rs
    assert parse_text(dump_yaml(doc)) == rs
    assert set(doc) == set(RULE_TYPES)


def test_load_text_reports_syntax_errors_as_validation_errors():
    with pytest.raises(RuleValidationError) as info:
        load_text("{not json")
    assert info.value.errors[0][0] == "$"


def test_diff_documents():
    old = canonical({"flow": [{"resource": "r", "threshold": 1}]})
    new = canonical({"flow": [{"resource": "r", "threshold": 2}], "degrade": [{"resource": "r"}]})
    d = diff_documents(old, new)
    assert d["flow"]["added"][0]["threshold"] == 2 and d["flow"]["removed"][0]["threshold"] == 1
    assert d["degrade"]["added"][0]["fallback"] == "default"
    assert "breaker" not in d


def test_demo_rules_are_valid():
    path = Path(__file__).parents[3] / "guardians" / "demo_rules.yaml"
    rs = parse_text(path.read_text())
    assert any(r.resource == "order.place" for r in rs.flow)
    assert any(r.resource == "payment.charge" for r in rs.breaker)
    assert any(r.resource == "payment.charge" for r in rs.degrade)
    assert any(r.param == "sku" for r in rs.param)


# ---------------------------------------------------------------- property test
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "r",
            "order.place",
            "qps",
            "concurrency",
            "direct",
            "relate",
            "chain",
            "reject",
            "warm_up",
            "queue",
            "warm_up_queue",
            "adaptive",
            "vegas",
            "slow_ratio",
            "error_ratio",
            "error_count",
            "cpu",
            "load",
            "bbr",
            "sku",
            "default",
            "",
        ]
    ),
    st.text(max_size=5),
)
FIELDS = [
    "resource",
    "grade",
    "threshold",
    "strategy",
    "ref_resource",
    "origin",
    "behavior",
    "warm_up_s",
    "cold_factor",
    "max_queue_ms",
    "algorithm",
    "min_limit",
    "max_rt_ms",
    "stat_interval_ms",
    "min_requests",
    "recovery_s",
    "probes",
    "metric",
    "param",
    "burst",
    "duration_s",
    "exceptions",
    "fallback",
    "name",
    "cluster",
    "shared",
]
rule = st.dictionaries(
    st.sampled_from(FIELDS),
    st.one_of(scalars, st.dictionaries(st.text(max_size=3), scalars, max_size=2)),
    max_size=8,
)
document = st.dictionaries(
    st.sampled_from([*RULE_TYPES, "other"]), st.one_of(st.lists(rule, max_size=4), scalars), max_size=5
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=document,
    calls=st.lists(
        st.tuples(st.sampled_from(["r", "order.place", "x"]), st.booleans(), st.floats(0, 2)), max_size=12
    ),
)
def test_no_rule_document_crashes_parse_apply_or_entry(doc, calls):
    eng, clock = engine({})
    try:
        rs = parse_document(doc)
    except RuleValidationError as exc:
        assert exc.errors and all(isinstance(p, str) and isinstance(m, str) for p, m in exc.errors)
        return
    eng.apply(rs)
    assert parse_document(rs.to_document()) == rs
    for resource, fail, advance in calls:

        def work(fail=fail, advance=advance):
            clock.advance(advance / 10)
            if fail:
                raise RuntimeError("x")
            return 1

        try:
            eng.guard(resource, work, args={"sku": "A"}, fallback=lambda e: 0)
        except (Blocked, RuntimeError):
            pass
        try:
            with eng.entry(resource, args={"sku": "B"}, origin="r", inbound=True):
                pass
        except Blocked:
            pass
        clock.advance(advance)
    eng.metrics_since(0)
    eng.stats()
    assert eng.checker_errors == 0


# valid documents, so the property also exercises apply and the chain with real rules
res = st.sampled_from(["r", "order.place", "x"])
flow_rule = st.one_of(
    st.fixed_dictionaries(
        {
            "resource": res,
            "threshold": st.integers(1, 50),
            "behavior": st.sampled_from(["reject", "warm_up", "queue", "warm_up_queue"]),
        }
    ),
    st.fixed_dictionaries(
        {
            "resource": res,
            "threshold": st.integers(1, 50),
            "grade": st.just("concurrency"),
            "behavior": st.sampled_from(["reject", "adaptive"]),
        }
    ),
    st.fixed_dictionaries(
        {
            "resource": res,
            "threshold": st.integers(1, 50),
            "strategy": st.just("chain"),
            "origin": st.just("r"),
        }
    ),
    st.fixed_dictionaries(
        {
            "resource": st.just("r"),
            "threshold": st.integers(1, 50),
            "strategy": st.just("relate"),
            "ref_resource": st.just("x"),
        }
    ),
)
breaker_rule = st.fixed_dictionaries(
    {
        "resource": res,
        "strategy": st.sampled_from(["error_ratio", "error_count"]),
        "threshold": st.just(1),
        "min_requests": st.integers(1, 5),
        "recovery_s": st.floats(0.1, 5),
        "probes": st.integers(1, 3),
    }
)
valid_document = st.fixed_dictionaries(
    {
        "flow": st.lists(flow_rule, max_size=4),
        "breaker": st.lists(breaker_rule, max_size=2),
        "system": st.lists(
            st.fixed_dictionaries(
                {
                    "metric": st.sampled_from(["qps", "concurrency", "avg_rt", "load"]),
                    "threshold": st.integers(1, 20),
                }
            ),
            max_size=2,
        ),
        "param": st.lists(
            st.fixed_dictionaries(
                {
                    "resource": res,
                    "param": st.just("sku"),
                    "threshold": st.integers(0, 5),
                    "burst": st.integers(0, 3),
                }
            ),
            max_size=2,
        ),
        "degrade": st.lists(
            st.fixed_dictionaries({"resource": res, "fallback": st.just("default")}), max_size=2
        ),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=valid_document,
    calls=st.lists(
        st.tuples(st.sampled_from(["r", "order.place", "x"]), st.booleans(), st.floats(0, 2)), max_size=15
    ),
)
def test_valid_documents_apply_and_guard_without_crashing(doc, calls):
    test_no_rule_document_crashes_parse_apply_or_entry.hypothesis.inner_test(doc=doc, calls=calls)


# ---------------------------------------------------------------- the one schema
def test_rules_md_reference_tables_agree_with_the_models():
    text = RULES_MD.read_text()
    assert render_rules_md(text) == text, (
        "guardians/RULES.md disagrees with the models of guardians/schema.py: "
        "run `python -m guardians.reference --write` and commit RULES.md"
    )


def test_reference_markdown_lists_every_field_with_its_default_and_bounds():
    for kind, model in MODELS.items():
        table = reference_markdown(kind)
        for name in model.model_fields:
            assert f"| `{name}` |" in table, (kind, name)
    assert "| `stat_interval_ms` | integer | `1000` | ≥ 500, ≤ 60000 |" in reference_markdown("breaker")
    assert "`bbr` when metric is load, `plain` otherwise" in reference_markdown("system")


def test_compiled_rules_keep_the_models_static_defaults():
    """The dataclasses the engine reads default like the models (e.g. a rule built in code)."""
    for kind, cls in (("flow", FlowRule), ("breaker", BreakerRule), ("param", ParamRule)):
        model = MODELS[kind]
        for f in dataclasses.fields(cls):
            info = model.model_fields.get(f.name)
            if info is None or info.is_required() or info.default is None:
                continue
            assert f.default == info.default, (kind, f.name)


@functools.cache
def _schema_validator():
    import jsonschema  # a dev dependency

    schema = document_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_json_schema_accepts_the_demo_rules_and_rejects_bad_documents():
    validator = _schema_validator()
    demo = yaml.safe_load((Path(__file__).parents[3] / "guardians" / "demo_rules.yaml").read_text())
    assert list(validator.iter_errors(demo)) == []
    bad = [
        {"flow": [{"resource": "r", "threshold": 0}]},  # bound
        {"flow": [{"resource": "r", "threshold": 5, "burst": 3}]},  # unknown field
        {"limits": []},  # unknown rule type
        {"breaker": [{"resource": "p", "strategy": "slow_ratio", "threshold": 0.5}]},  # max_rt_ms required
        {"breaker": [{"resource": "p", "strategy": "error_ratio", "threshold": 1.5}]},  # ratio <= 1
        {"flow": [{"resource": "r", "threshold": 5, "warm_up_s": 3}]},  # warm_up_s only with warm_up
        {"flow": [{"resource": "r", "threshold": 5, "behavior": "adaptive"}]},  # grade must be concurrency
        {"system": [{"metric": "qps", "threshold": 10, "strategy": "bbr"}]},
        {"system": [{"metric": "cpu", "threshold": 80}]},
    ]
    for doc in bad:
        assert list(validator.iter_errors(doc)), doc
        with pytest.raises(RuleValidationError):  # and the parser agrees
            parse_document(doc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=valid_document)
def test_json_schema_accepts_what_the_parser_accepts(doc):
    parse_document(doc)
    assert list(_schema_validator().iter_errors(doc)) == []


def test_cli_prints_the_json_schema(capsys):
    from tradeguard import cli

    assert cli.main(["rules", "schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(document_json_schema()))
    assert set(printed["properties"]) == set(RULE_TYPES)
