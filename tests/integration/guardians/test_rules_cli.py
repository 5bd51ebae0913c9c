import json

import pytest

from tradeguard.cli import main

pytestmark = pytest.mark.integration

DOC = """
flow:
  - {resource: order.place, threshold: 100, behavior: warm_up, warm_up_s: 10}
breaker:
  - {resource: payment.charge, strategy: error_ratio, threshold: 0.5}
"""
DOC2 = """
flow:
  - {resource: order.place, threshold: 50}
"""
BAD = """
flow:
  - {resource: order.place, threshold: -3, grade: rps}
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEGUARD_CONTROL_DB", f"sqlite:///{tmp_path}/control.db")
    monkeypatch.setenv("TRADEGUARD_VAR_DIR", str(tmp_path / "var"))
    for name, text in (("doc.yaml", DOC), ("doc2.yaml", DOC2), ("bad.yaml", BAD)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_apply_list_show_diff_history_rollback(env, capsys):
    f1, f2 = str(env / "doc.yaml"), str(env / "doc2.yaml")
    assert main(["rules", "list"]) == 0
    assert "no rules stored yet" in capsys.readouterr().out
    assert main(["rules", "apply", "-f", f1, "--by", "alice", "--why", "initial"]) == 0
    out = capsys.readouterr().out
    assert "applied: app tradeguard v1" in out and "+ flow:" in out
    assert main(["rules", "apply", "-f", f1, "--by", "alice", "--why", "again"]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert main(["rules", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["version"] == 1 and {r["type"] for r in listed["rules"]} == {"flow", "breaker"}
    assert main(["rules", "diff", "-f", f2]) == 0
    out = capsys.readouterr().out
    assert "- breaker:" in out and "+ flow:" in out
    assert main(["rules", "apply", "-f", f2, "--by", "bob", "--why", "sale"]) == 0
    capsys.readouterr()
    assert main(["rules", "show"]) == 0
    out = capsys.readouterr().out
    assert "v2 by bob" in out and "threshold: 50" in out
    assert main(["rules", "show", "--version", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["document"]["breaker"][0]["resource"] == "payment.charge"
    assert main(["rules", "rollback", "1", "--by", "carol", "--why", "sale over"]) == 0
    assert "v3 has the content of v1" in capsys.readouterr().out
    assert main(["rules", "history"]) == 0
    out = capsys.readouterr().out
    assert "restores v1" in out and "carol" in out and "bob" in out
    assert main(["rules", "history", "--json"]) == 0
    assert [h["version"] for h in json.loads(capsys.readouterr().out)] == [3, 2, 1]
    assert main(["rules", "show", "--version", "9"]) == 1


def test_invalid_document_prints_each_field_and_exits_2(env, capsys):
    assert main(["rules", "apply", "-f", str(env / "bad.yaml"), "--by", "x", "--why", "y"]) == 2
    err = capsys.readouterr().err
    assert "flow[0].threshold: must be a number > 0" in err
    assert "flow[0].grade: must be one of qps, concurrency" in err
    assert main(["rules", "validate", "-f", str(env / "bad.yaml")]) == 2
    assert main(["rules", "diff", "-f", str(env / "bad.yaml")]) == 2
    assert main(["rules", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] is None  # nothing stored


def test_app_option_separates_documents(env, capsys):
    assert (
        main(["rules", "apply", "--app", "shop2", "-f", str(env / "doc2.yaml"), "--by", "a", "--why", "b"])
        == 0
    )
    capsys.readouterr()
    assert main(["rules", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] is None
    assert main(["rules", "list", "--app", "shop2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
