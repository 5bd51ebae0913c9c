"""Alert rules that propose a fix: the proposal model and the document it makes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from alerts.proposal import ProposalDoc, ProposalError, proposed_document
from alerts.rulefile import default_config
from alerts.schema import RuleDoc


def test_default_rules_ship_proposals() -> None:
    from pathlib import Path

    import yaml

    raw = yaml.safe_load((Path(__file__).parents[3] / "alerts" / "default_rules.yaml").read_text())
    by_name = {r["name"]: RuleDoc.model_validate(r) for r in raw["rules"]}
    pay = by_name["PaymentSuccessRateLow"].proposal
    assert pay is not None and pay.action == "degrade" and pay.fallback == "queue_payment"
    lat = by_name["OrderPlaceLatencyHigh"].proposal
    assert lat is not None and lat.resource == "POST /orders" and lat.grade == "concurrency"
    assert default_config().rules  # the file still loads as a whole


def test_degrade_proposal_replaces_the_resource_rule_and_keeps_the_rest() -> None:
    current = {
        "flow": [{"resource": "order.place", "threshold": 5}],
        "degrade": [{"resource": "payment.charge", "fallback": "default"}],
    }
    doc = proposed_document(
        current, ProposalDoc(action="degrade", resource="payment.charge", fallback="queue_payment")
    )
    assert [r["fallback"] for r in doc["degrade"]] == ["queue_payment"]
    assert doc["flow"][0]["resource"] == "order.place"


def test_set_flow_tightens_only_the_same_grade() -> None:
    current = {
        "flow": [
            {"resource": "POST /orders", "threshold": 100, "grade": "concurrency"},
            {"resource": "POST /orders", "threshold": 500, "grade": "qps"},
        ]
    }
    doc = proposed_document(
        current, ProposalDoc(action="set_flow", resource="POST /orders", threshold=40, grade="concurrency")
    )
    got = {r["grade"]: r["threshold"] for r in doc["flow"]}
    assert got == {"concurrency": 40, "qps": 500}


def test_invalid_proposals_name_the_field() -> None:
    with pytest.raises(ValidationError, match=r"proposal\.fallback"):
        ProposalDoc(action="degrade", resource="payment.charge")
    with pytest.raises(ValidationError, match=r"proposal\.threshold"):
        ProposalDoc(action="set_flow", resource="order.place")
    with pytest.raises(ProposalError, match="invalid proposal"):
        proposed_document({}, ProposalDoc(action="degrade", resource="payment.charge", fallback="bad name!"))
