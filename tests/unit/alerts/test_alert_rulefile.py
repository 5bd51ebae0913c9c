"""Alert documents: the shipped defaults, YAML round trip, and errors that name the field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.errors import AlertConfigError
from alerts.model import Matcher, fingerprint
from alerts.rulefile import default_config, dump_yaml, load_text, parse_document
from common.durations import parse_duration


def test_default_rules_cover_the_issue():
    cfg = default_config()
    by_name = {r.name: r for r in cfg.rules}
    assert set(by_name) == {
        "PaymentSuccessRateLow",
        "OrderPlaceLatencyHigh",
        "BlockedShareHigh",
        "BreakerOpen",
        "OutboxBacklogGrowing",
        "NodeHeartbeatMissing",
        "RelayLagHigh",
    }
    pay = by_name["PaymentSuccessRateLow"]
    assert pay.op == "<" and pay.threshold == 0.95 and pay.for_ == timedelta(minutes=1)
    assert pay.query.ratio.numerator == ("success",) and pay.query.ratio.denominator == ("success", "failure")
    lat = by_name["OrderPlaceLatencyHigh"]
    assert (
        lat.query.aggregate == "p99"
        and lat.threshold == 500
        and lat.query.where == {"resource": "order.place"}
    )
    relay = by_name["RelayLagHigh"]
    assert relay.query.measurement == "relay" and relay.query.field == "relay_lag_s"
    assert relay.op == ">" and relay.threshold == 30 and relay.for_ == timedelta(minutes=1)
    assert by_name["BlockedShareHigh"].threshold == 0.2
    assert by_name["BreakerOpen"].on_breaker_state == "open" and by_name["BreakerOpen"].threshold == 1
    assert by_name["OutboxBacklogGrowing"].query.function == "delta"
    assert by_name["OutboxBacklogGrowing"].for_ == timedelta(minutes=2)
    assert (
        by_name["NodeHeartbeatMissing"].kind == "heartbeat"
        and by_name["NodeHeartbeatMissing"].threshold == 30
    )
    assert cfg.inhibit_rules and cfg.route.group_by == ("alertname", "app")


def test_yaml_round_trip_of_every_section():
    text = """
rules:
  - name: A
    query: {measurement: m, field: f, aggregate: p95, window: 5m, where: {x: y}, group_by: [g]}
    op: ">="
    threshold: 3
    for: 90s
    keep_firing_for: 2m
    labels: {team: t}
    annotations: {summary: s}
    no_data: alerting
    on_error: normal
    enabled: false
inhibit_rules: [{source: {alertname: A}, target: ["x=~.*"], equal: [g]}]
route: {receiver: r, group_by: [g], group_wait: 1s, group_interval: 2m, repeat_interval: 1d}
channels: [{name: w, kind: webhook, url: "http://x/y"}, {name: l, kind: log}]
escalation_policies: [{name: r, steps: [{channels: [w]}, {wait: 5m, channels: [l], oncall: p}]}]
rotations:
  - {name: p, start: "2026-11-23T09:00:00Z", shift: 1w, members: [a, {name: b, email: b@x}],
     overrides: [{who: c, start: "2026-11-24T00:00:00Z", end: "2026-11-25T00:00:00Z"}]}
"""
    cfg = load_text(text)
    assert load_text(dump_yaml(cfg)) == cfg
    assert cfg.rules[0].for_ == timedelta(seconds=90) and not cfg.rules[0].enabled


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (
            {"rules": [{"query": {"measurement": "m", "field": "f"}, "threshold": 1}]},
            "rules[0].name",
            "required",
        ),
        ({"rules": [{"name": "a", "threshold": 1}]}, "rules[0].query", "required"),
        (
            {"rules": [{"name": "a", "query": {"field": "f"}, "threshold": 1}]},
            "rules[0].query.measurement",
            "required",
        ),
        (
            {"rules": [{"name": "a", "query": {"measurement": "m"}, "threshold": 1}]},
            "rules[0].query.field",
            "ratio",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "query": {"measurement": "m", "field": "f", "aggregate": "avg"},
                        "threshold": 1,
                    }
                ]
            },
            "rules[0].query.aggregate",
            "p99",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "query": {"measurement": "m", "field": "f", "window": "soon"},
                        "threshold": 1,
                    }
                ]
            },
            "rules[0].query.window",
            "30s",
        ),
        (
            {"rules": [{"name": "a", "query": {"measurement": "m", "field": "f"}, "threshold": "x"}]},
            "rules[0].threshold",
            "number",
        ),
        (
            {
                "rules": [
                    {"name": "a", "query": {"measurement": "m", "field": "f"}, "threshold": 1, "op": "=>"}
                ]
            },
            "rules[0].op",
            ">=",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "query": {"measurement": "m", "field": "f"},
                        "threshold": 1,
                        "severity": "high",
                    }
                ]
            },
            "rules[0].severity",
            "critical",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "query": {"measurement": "m", "field": "f"},
                        "threshold": 1,
                        "no_data": "ok",
                    }
                ]
            },
            "rules[0].no_data",
            "keep_last",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "query": {"measurement": "m", "field": "f"},
                        "threshold": 1,
                        "on_error": "x",
                    }
                ]
            },
            "rules[0].on_error",
            "alerting",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "query": {"measurement": "m", "field": "f", "function": "delta"},
                        "threshold": 1,
                    }
                ]
            },
            "rules[0].query.bucket",
            "delta",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "query": {"measurement": "m", "ratio": {"numerator": ["x"]}},
                        "threshold": 1,
                    }
                ]
            },
            "rules[0].query.ratio.denominator",
            "required",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "query": {"measurement": "m", "field": "f"},
                        "threshold": 1,
                        "labels": {"alertname": "b"},
                    }
                ]
            },
            "rules[0].labels.alertname",
            "remove",
        ),
        (
            {"rules": [{"name": "a", "query": {"measurement": "m", "field": "f"}, "threshold": 1, "fro": 1}]},
            "rules[0].fro",
            "unknown",
        ),
        ({"rules": [{"name": "a", "kind": "m", "threshold": 1}]}, "rules[0].kind", "heartbeat"),
        ({"rulez": []}, "rulez", "unknown section"),
        ({"channels": [{"name": "w", "kind": "webhook"}]}, "channels[0].url", "http"),
        ({"channels": [{"name": "w", "kind": "sms"}]}, "channels[0].kind", "webhook, email, log"),
        (
            {"escalation_policies": [{"name": "p", "steps": [{"channels": ["a"]}, {"channels": ["b"]}]}]},
            "escalation_policies[0].steps[1].wait",
            "> 0",
        ),
        (
            {"rotations": [{"name": "r", "members": ["a"], "start": "monday"}]},
            "rotations[0].start",
            "ISO 8601",
        ),
        (
            {"rotations": [{"name": "r", "members": [], "start": "2026-11-23T00:00:00Z"}]},
            "rotations[0].members",
            "non-empty",
        ),
    ],
)
def test_invalid_documents_name_the_field(doc, field, words):
    with pytest.raises(AlertConfigError) as e:
        parse_document(doc)
    fields = {p: m for p, m in e.value.errors}
    assert field in fields, e.value.errors
    assert words in fields[field]


def test_duplicate_rule_names_are_rejected():
    rule = {"name": "a", "query": {"measurement": "m", "field": "f"}, "threshold": 1}
    with pytest.raises(AlertConfigError) as e:
        parse_document({"rules": [rule, rule]})
    assert e.value.errors == [("rules[1].name", "duplicate name 'a'; names must be unique")]


def test_matchers_durations_fingerprints():
    assert Matcher.parse("instance=~node-.*").matches({"instance": "node-1"})
    assert not Matcher.parse("instance!~node-.*").matches({"instance": "node-1"})
    assert Matcher.parse('a="b c"').value == "b c"
    assert Matcher.parse("a!=b").matches({})
    assert parse_duration("1h") == timedelta(hours=1) and parse_duration(90) == timedelta(seconds=90)
    assert parse_duration("500ms") == timedelta(milliseconds=500)
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"}) != fingerprint({"a": "1"})


CANARY = "canary-S3cr3t-7f1e"


@pytest.mark.parametrize(
    ("channel", "field"),
    [
        ({"kind": "webhook", "url": f"https://hooks.example.com/x?token={CANARY}"}, "channels[0].url"),
        ({"kind": "webhook", "url": f"https://bot:{CANARY}@hooks.example.com/x"}, "channels[0].url"),
        ({"kind": "webhook", "url": f"https://{CANARY}@hooks.example.com/x"}, "channels[0].url"),
        (
            {
                "kind": "webhook",
                "url": "https://hooks.example.com/x",
                "headers": {"Authorization": f"Bearer {CANARY}"},
            },
            "channels[0].headers.Authorization",
        ),
        (
            {"kind": "webhook", "url": "https://hooks.example.com/x", "headers": {"X-Api-Key": CANARY}},
            "channels[0].headers.X-Api-Key",
        ),
        (
            {"kind": "email", "smtp_url": f"smtp://alerts:{CANARY}@mail.example.com:587"},
            "channels[0].smtp_url",
        ),
    ],
)
def test_a_literal_credential_in_a_channel_is_refused_and_never_repeated(channel, field):
    with pytest.raises(AlertConfigError) as e:
        parse_document({"channels": [{"name": "c", **channel}]})
    fields = dict(e.value.errors)
    assert field in fields, e.value.errors
    assert "${ENV_NAME}" in fields[field]
    assert CANARY not in str(e.value)


def test_credentials_as_references_are_accepted_and_kept_as_references():
    cfg = parse_document(
        {
            "channels": [
                {"name": "a", "kind": "webhook", "url": "${HOOK_URL}"},
                {
                    "name": "b",
                    "kind": "webhook",
                    "url": "https://hooks.example.com/x?token=${HOOK_TOKEN}&team=ops",
                    "headers": {"Authorization": "Bearer ${HOOK_TOKEN}", "X-Team": "ops"},
                },
                {
                    "name": "c",
                    "kind": "email",
                    "smtp_url": "smtp://alerts:${SMTP_PASSWORD}@mail.example.com:587",
                },
            ]
        }
    )
    a, b, c = cfg.channels
    assert a.config == {"url": "${HOOK_URL}"} and c.config["smtp_url"].endswith(
        "${SMTP_PASSWORD}@mail.example.com:587"
    )
    assert b.config["headers"] == {"Authorization": "Bearer ${HOOK_TOKEN}", "X-Team": "ops"}
    assert "${SMTP_PASSWORD}" in dump_yaml(cfg) and load_text(dump_yaml(cfg)) == cfg


def test_unknown_channel_fields_and_unresolved_references_are_errors(monkeypatch):
    from alerts.model import Channel
    from alerts.notify import resolve_config
    from common.redact import UnresolvedReference

    with pytest.raises(AlertConfigError) as e:
        parse_document({"channels": [{"name": "w", "kind": "webhook", "url": "http://x/y", "pasword": "x"}]})
    assert [p for p, _ in e.value.errors] == ["channels[0].pasword"]
    monkeypatch.delenv("HOOK_URL_UNSET", raising=False)
    with pytest.raises(UnresolvedReference, match="HOOK_URL_UNSET"):
        resolve_config(Channel("w", "webhook", {"url": "${HOOK_URL_UNSET}"}))
    config, secrets = resolve_config(
        Channel(
            "w", "webhook", {"url": "https://h/x?token=${T}", "headers": {"Authorization": "Bearer ${T}"}}
        ),
        {"T": CANARY},
    )
    assert config["url"] == f"https://h/x?token={CANARY}" and config["headers"]["Authorization"].endswith(
        CANARY
    )
    assert CANARY in secrets
