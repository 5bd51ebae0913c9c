"""The flow rule form's "Suggest" button through ``streamlit.testing.v1.AppTest`` (issue 17): over the
embedded metric store with recorded traffic, on the Rules page signed in through ``as_user``.

- traffic with a knee (a simulated service whose response time climbs past 200/s): the QPS and
  concurrency proposals, the evidence scatter with the knee, the impact preview of the proposal, and
  the proposal put into the rule form and saved to the draft (nothing applied);
- flat traffic: no suggestion, the "not enough evidence" reason;
- a user without ``ops.read`` (a merchant): refused by the services and on the page.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from common.identity import Forbidden, Principal

from .points import resource_point, seconds_before
from .signin import texts

ROOT = Path(__file__).resolve().parents[3]
RULES_PAGE = ROOT / "console" / "views" / "rules.py"
TIMEOUT = 60
KNEE = 200.0
BASELINE = {"flow": [{"resource": "order.place", "threshold": 500}]}


def _traffic(clock, rt_of, level_of, n: int = 1800) -> list:
    """``n`` recorded seconds of order.place ending a minute ago: the offered load steps every 10 s
    (so the 5 s buckets of a 24 h read keep it), the response time follows ``rt_of`` ± 5 %."""
    rnd = random.Random(17)
    base = seconds_before(clock.now(), n)
    out = []
    for i in range(n):
        q = level_of(i // 10)
        rt = rt_of(q) * rnd.uniform(0.95, 1.05)
        out.append(resource_point(base + i, "order.place", passed=int(q), rt=rt))
    return out


def _knee_rt(q: float) -> float:
    return 20.0 + 0.5 * max(0.0, q - KNEE)  # flat 20 ms, then queueing past 200/s


@pytest.fixture
def rules_page(monkeypatch, svc):
    def open_as(principal: Principal) -> AppTest:
        monkeypatch.setattr("console.runtime.services", lambda: svc.as_user(principal))
        at = AppTest.from_file(str(RULES_PAGE), default_timeout=TIMEOUT)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return open_as


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _title(fig: dict) -> str:
    t = fig.get("layout", {}).get("title", {})
    text = t.get("text", "") if isinstance(t, dict) else str(t)
    return text.removeprefix("<b>").removesuffix("</b>")


def _field(at: AppTest, name: str, gen: int, idx: int = 0):
    key = f"fld_flow_{idx}_{gen}_{name}"
    return next(w for w in (*at.number_input, *at.selectbox) if w.key == key)


def test_suggest_with_a_knee_shows_the_proposals_evidence_and_impact_then_fills_the_form(
    rules_page, svc, metrics, clock
):
    metrics.write(_traffic(clock, _knee_rt, lambda step: 20.0 + (step % 30) * 11.0))  # 20 … 339/s
    svc.rules.apply("shop", BASELINE, "ann", "baseline")
    at = rules_page(Principal("sam", "sre"))
    gen = at.session_state["rules_gen"]
    assert not any(m.label == "QPS threshold" for m in at.metric)  # drawn only when asked
    queries = metrics.queries
    at.button(key="suggest_form_btn").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert metrics.queries - queries <= 2 + 3  # the suggestion + its preview (+ the page's own reads)

    reason = texts(at.success)
    assert "knee at" in reason and "proposing" in reason
    metric = {m.label: m.value for m in at.metric}
    knee = float(metric["Knee"].split("/")[0])
    assert abs(knee - KNEE) <= 0.1 * KNEE
    qps = int(metric["QPS threshold"].removesuffix("/s"))
    exact_knee = at.session_state["suggest_form_out"][2].suggestion.knee_qps  # the page shows it rounded
    assert qps == math.floor(exact_knee * 0.8)  # 20 % below the knee
    concurrency = int(metric["Concurrency threshold"])
    assert concurrency == pytest.approx(0.8 * knee * 0.020, abs=1.01)  # Little's law at ~20 ms

    figs = {_title(f): f for f in _charts(at)}
    evidence = figs["Throughput vs response time (per node)"]
    assert [t["name"] for t in evidence["data"]] == ["recorded second", "median per bin"]
    marks = [a["text"] for a in evidence["layout"].get("annotations", [])]
    assert any(m.startswith("knee ") for m in marks) and f"proposed {qps}/s" in marks
    assert any(t.startswith(f"order.place: proposed {qps}/s replayed") for t in figs)
    preview = texts(at.caption)
    assert f"Impact preview of {qps}/s: would block" in preview
    assert "would block 0 of" not in preview  # the recorded peaks (339/s) are above the proposal

    # the concurrency proposal into the form, then the QPS one; saved to the draft, nothing applied
    at.button(key="suggest_form_use_conc").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert _field(at, "grade", gen).value == "concurrency"
    assert _field(at, "threshold", gen).value == concurrency
    assert f"grade concurrency, threshold {concurrency}" in texts(at.info)
    at.button(key="suggest_form_use_qps").click().run()
    assert _field(at, "grade", gen).value == "qps"
    assert _field(at, "threshold", gen).value == qps
    at.button(key=f"FormSubmitter:rule_form_flow_0_{gen}-Save to draft & validate").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["rules_draft"]["flow"][0]["threshold"] == qps
    assert not at.session_state["rules_form_errors"]
    in_force = svc.rules_in_force()  # in the draft only: nothing applied
    assert in_force.version == 1 and in_force.document["flow"][0]["threshold"] == 500


def test_suggest_on_flat_traffic_says_not_enough_evidence(rules_page, svc, metrics, clock):
    metrics.write(_traffic(clock, _knee_rt, lambda step: 100.0 + step % 5))  # 100 … 104/s
    svc.rules.apply("shop", BASELINE, "ann", "baseline")
    at = rules_page(Principal("olivia", "oncall"))  # on-call reads traffic: it may ask
    at.button(key="suggest_form_btn").click().run()
    assert not at.exception, [e.message for e in at.exception]
    info = texts(at.info)
    assert "No suggestion for order.place (24h): not enough evidence" in info
    assert "throughput stayed between" in info
    assert not any(m.label == "QPS threshold" for m in at.metric)
    assert not any(b.key == "suggest_form_use_qps" for b in at.button)  # nothing to put in the form
    # the evidence is still drawn (no knee marked), the rule in force untouched
    evidence = next(f for f in _charts(at) if _title(f) == "Throughput vs response time (per node)")
    assert not evidence["layout"].get("annotations")
    assert svc.rules_in_force().document["flow"][0]["threshold"] == 500


def test_a_user_without_permission_cannot_use_suggest(monkeypatch, svc, metrics, clock):
    metrics.write(_traffic(clock, _knee_rt, lambda step: 20.0 + (step % 30) * 11.0))
    mia = Principal("mia", "merchant", ("shop-a",))
    with pytest.raises(Forbidden, match="user mia \\(merchant\\) may not read the operational pages"):
        svc.as_user(mia).suggest("order.place", 86400)

    # the block itself, on a page that draws it for a user without ops.read: disabled, saying why
    def block() -> None:
        from console.runtime import services
        from console.views.suggest_block import suggest_block

        suggest_block(services(), "order.place", "sg", lambda grade, threshold: None)

    monkeypatch.setattr("console.runtime.services", lambda: svc.as_user(mia))
    at = AppTest.from_function(block, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.button(key="sg_btn").disabled
    assert "Suggest is not available: user mia (merchant) may not read the operational pages" in texts(
        at.caption
    )
    assert not any(m.label == "QPS threshold" for m in at.metric)

    # and the Rules page, where the block lives, is refused whole
    at = AppTest.from_file(str(RULES_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert "may not read the operational pages" in texts(at.error)
    assert not any(b.key == "suggest_form_btn" for b in at.button)
