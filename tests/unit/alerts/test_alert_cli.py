"""``tradeguard alerts …`` and ``tradeguard worker --once/--health`` against a temp control DB."""

from __future__ import annotations

import json

import pytest

from alerts.rulefile import default_config
from tradeguard.cli import main


@pytest.fixture
def var(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEGUARD_VAR_DIR", str(tmp_path / "var"))
    for name in (
        "TRADEGUARD_CONTROL_DB",
        "TRADEGUARD_METRICS_URL",
        "TRADEGUARD_ALERT_WEBHOOK_URL",
        "TRADEGUARD_SMTP_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_worker_once_installs_default_rules_and_health_reads_the_cycle(var, capsys):
    code, out, _ = run(capsys, "worker", "--health")
    assert code == 1 and json.loads(out.strip().splitlines()[-1])["ok"] is False
    code, out, _ = run(capsys, "worker", "--once")
    n_default = len(default_config().rules)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["evaluate"]["rules"] == n_default
    code, out, _ = run(capsys, "worker", "--health")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and report["ok"] is True
    assert "relay" in report and "relay_lag_s" in report  # the journal relay's lag (none ran: None)
    code, out, _ = run(capsys, "alerts", "rules", "list", "--json")
    assert code == 0 and len(json.loads(out)) == n_default


def test_rules_apply_validate_and_errors(var, capsys, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(
        "rules:\n  - {name: CpuHigh, query: {measurement: host, field: cpu, aggregate: max},"
        " op: '>', threshold: 90}\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: CpuHigh, query: {measurement: host, field: cpu, aggregate: avg}}\n")
    code, out, _ = run(capsys, "alerts", "rules", "apply", "-f", str(good), "--by", "alice")
    assert code == 0 and json.loads(out)["rules"]["added"] == ["CpuHigh"]
    code, _, err = run(capsys, "alerts", "rules", "apply", "-f", str(bad), "--by", "alice")
    assert code == 2 and "rules[0].query.aggregate: must be one of sum" in err
    code, _, err = run(capsys, "alerts", "rules", "validate", "-f", str(bad))
    assert code == 1 and "rules[0].threshold" in err
    code, out, _ = run(capsys, "alerts", "rules", "list")
    assert code == 0 and "CpuHigh" in out


def test_silence_list_ack_flow(var, capsys):
    code, out, _ = run(
        capsys,
        "alerts",
        "silence",
        "--match",
        "alertname=BreakerOpen",
        "--match",
        "instance=~n.*",
        "--for",
        "1h",
        "--by",
        "alice",
        "--comment",
        "deploying",
    )
    s = json.loads(out)
    assert (
        code == 0 and s["matchers"] == ["alertname=BreakerOpen", "instance=~n.*"] and s["status"] == "active"
    )
    code, out, _ = run(capsys, "alerts", "silences", "--json")
    assert [x["id"] for x in json.loads(out)] == [s["id"]]
    code, out, _ = run(capsys, "alerts", "expire", str(s["id"]), "--by", "alice")
    assert json.loads(out)["status"] == "expired"
    code, out, _ = run(capsys, "alerts", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, _, err = run(capsys, "alerts", "ack", "42", "--by", "bob")
    assert code == 1 and "no alert with id 42" in err
    code, _, err = run(
        capsys, "alerts", "silence", "--match", "oops", "--for", "1h", "--by", "a", "--comment", "c"
    )
    assert code == 1 and "label=value" in err


def test_rules_schema_validates_the_shipped_rules_and_rejects_a_bad_file(var, capsys, tmp_path):
    import jsonschema
    import yaml

    from alerts.rulefile import default_rules_text

    code, out, _ = run(capsys, "alerts", "rules", "schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(default_rules_text()))) == []
    bad = {
        "rules": [
            {"name": "A", "query": {"measurement": "m", "field": "f", "aggregate": "avg"}, "threshold": 1},
            {"name": "B", "kind": "heartbeat", "threshold": "high", "for": "soon", "fro": 1},
        ],
        "rulez": [],
    }

    def flat(errors):  # anyOf (a section may be null) nests the real errors in .context
        for e in errors:
            yield e
            yield from flat(e.context)

    found = [("/".join(map(str, e.absolute_path)), e.message) for e in flat(validator.iter_errors(bad))]
    assert {"rules/0/query/aggregate", "rules/1/threshold", "rules/1/for"} <= {path for path, _ in found}
    assert any(path == "" and "'rulez'" in msg for path, msg in found)
    assert any(path == "rules/1" and "'fro'" in msg for path, msg in found)
    # what the schema accepts, tradeguard accepts too (durations, matchers, members …)
    good = tmp_path / "full.yaml"
    good.write_text(
        "rules: [{name: X, query: {measurement: m, ratio: {numerator: a, denominator: [a, b]},"
        " window: 1h30m}, threshold: 0.5, for: 90, severity: info}]\n"
        "inhibit_rules: [{source: {alertname: X}, target: ['instance=~.+'], equal: instance}]\n"
        "route: {receiver: p, group_wait: 10s}\n"
        "channels: [{name: hook, kind: webhook, url: '${HOOK_URL}',"
        " headers: {Authorization: 'Bearer ${T}'}}]\n"
        "escalation_policies: [{name: p, steps: [{channels: [hook]},"
        " {channels: hook, wait: 5m, oncall: r}]}]\n"
        "rotations: [{name: r, start: '2026-11-23T09:00:00Z', members: [a, {name: b, email: b@x}]}]\n"
    )
    assert list(validator.iter_errors(yaml.safe_load(good.read_text()))) == []
    code, out, err = run(capsys, "alerts", "rules", "validate", "-f", str(good))
    assert code == 0 and out.strip() == "valid", err
