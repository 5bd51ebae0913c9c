"""``tradeguard alerts rules apply --why | history | rollback`` against a temp control DB."""

from __future__ import annotations

import json

from tests.unit.alerts.test_alert_cli import run, var  # noqa: F401  (the fixture)

RULE = (
    "rules:\n  - {{name: CpuHigh, query: {{measurement: host, field: cpu, aggregate: max}},"
    " op: '>', threshold: {t}}}\n"
)


def test_apply_history_and_rollback_through_the_cli(var, capsys, tmp_path):  # noqa: F811
    for t in (90, 95):
        f = tmp_path / f"r{t}.yaml"
        f.write_text(RULE.format(t=t))
        code, out, _ = run(
            capsys, "alerts", "rules", "apply", "-f", str(f), "--by", "alice", "--why", f"to {t}"
        )
        assert code == 0 and json.loads(out)["version"] == (1 if t == 90 else 2)
    code, out, _ = run(capsys, "alerts", "rules", "history", "--json")
    hist = json.loads(out)
    assert [h["version"] for h in hist] == [2, 1] and hist[0]["why"] == "to 95"
    assert hist[0]["diff"]["changed"][0]["after"]["threshold"] == 95
    code, out, _ = run(capsys, "alerts", "rules", "history")
    assert code == 0 and "+0 ~1 -0" in out and "alice" in out
    code, out, _ = run(capsys, "alerts", "rules", "rollback", "1", "--by", "bob", "--why", "too quiet")
    assert code == 0 and json.loads(out)["version"] == 3 and json.loads(out)["restored_from"] == 1
    code, out, _ = run(capsys, "alerts", "rules", "list", "--json")
    assert json.loads(out)[0]["threshold"] == 90
    code, _, err = run(capsys, "alerts", "rules", "rollback", "9", "--by", "bob")
    assert code == 1 and "no version 9" in err
