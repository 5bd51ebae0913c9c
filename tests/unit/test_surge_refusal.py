"""A refusal at the door (GuardMiddleware outermost): answered before the app's own stack runs, with
the same problem+json as before; only the refusals a budget picks go inside (e.g. to be traced);
door rules of a two-node surge; the load generator's split of sources over nodes."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import pytest
import yaml

import guardians
from bench.loadgen import Generator, HttpPool
from bench.surge import demo_rules_path, door_rules
from common.clock import FakeClock
from guardians.http import REFUSED, GuardMiddleware, RefusalAnswer, blocked_problem
from tradeguard.bootstrap import RefusalBudget, build_node, seed_catalog
from tradeguard.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADDRESS = {"country": "CN", "province": "Zhejiang", "city": "Hangzhou", "district": "Xihu",
           "street": "1 Lake Road", "recipient": "Li", "phone": "13800000000"}


def _engine(doc: dict[str, Any]) -> guardians.Engine:
    eng = guardians.Engine(clock=FakeClock())
    eng.apply(guardians.parse_document(doc), version=1)
    return eng


def _call(app: Any, path: str = "/orders") -> tuple[int, dict[str, str], bytes, dict[str, Any]]:
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": path, "headers": [],
                             "query_string": b"", "root_path": ""}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body, scope


class Inner:
    """The app's own stack: records what reached it; answers 200, or via RefusalAnswer."""

    def __init__(self, engine: guardians.Engine) -> None:
        self.seen: list[str] = []

        async def ok(scope: Any, receive: Any, send: Any) -> None:
            self.seen.append("route")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        self.answer = RefusalAnswer(ok, engine)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append("stack")
        await self.answer(scope, receive, send)


def resolver(scope: Any) -> str:
    return "POST /orders"


def test_a_refusal_at_the_door_never_reaches_the_app_and_carries_the_same_problem():
    eng = _engine({"flow": [{"name": "cap", "resource": "POST /orders", "threshold": 1}]})
    inner = Inner(eng)
    door = GuardMiddleware(inner, eng, resolver)
    assert _call(door)[0] == 200 and inner.seen == ["stack", "route"]
    answers = [_call(door) for _ in range(3)]
    assert inner.seen == ["stack", "route"]  # the app's stack ran for the admitted request only
    for status, headers, body, _ in answers:
        assert status == 429 and headers["retry-after"] == "1"
        assert headers["content-type"] == "application/problem+json"
        assert int(headers["content-length"]) == len(body)
        doc = json.loads(body)
        assert doc["rule"] == "cap" and doc["resource"] == "POST /orders" and doc["status"] == 429
    assert answers[0][2] == answers[2][2]  # the prebuilt answer
    # every refusal counted in the engine's block log, under its rule
    assert dict(eng.block_log.top(1)) == {"cap": 3}
    # the same document blocked_problem gives any other HTTP layer
    with pytest.raises(guardians.Blocked) as caught:
        eng._enter("POST /orders", None, None, True)
    assert json.loads(answers[0][2]) == json.loads(json.dumps(blocked_problem(caught.value)[2], default=str))


def test_refusals_the_budget_picks_are_answered_inside_the_stack():
    eng = _engine({"flow": [{"name": "cap", "resource": "POST /orders", "threshold": 1}]})
    inner = Inner(eng)
    picked: list[str] = []

    def inside(resource: str, exc: guardians.Blocked) -> bool:
        picked.append(exc.rule_name)
        return len(picked) % 2 == 1  # every other refusal

    door = GuardMiddleware(inner, eng, resolver, refuse_inside=inside)
    assert _call(door)[0] == 200
    inner.seen.clear()
    first = _call(door)
    second = _call(door)
    assert first[0] == second[0] == 429
    assert inner.seen == ["stack"]  # the first went inside, was answered there (not routed)
    assert REFUSED in first[3] and REFUSED not in second[3]
    assert json.loads(first[2]) == json.loads(second[2])


def test_the_refusal_budget_is_per_rule_and_refills_with_time():
    now = [100.0]
    budget = RefusalBudget(2.0, lambda: now[0])
    a = guardians.FlowBlocked("POST /orders", None)
    a_rule = type("R", (), {"name": "a"})()
    b_rule = type("R", (), {"name": "b"})()
    ea, eb = guardians.FlowBlocked("POST /orders", a_rule), guardians.FlowBlocked("POST /orders", b_rule)
    assert [budget("POST /orders", ea) for _ in range(4)] == [True, True, False, False]
    assert budget("POST /orders", eb) is True  # another rule, its own budget
    now[0] += 0.5  # one token back
    assert [budget("POST /orders", ea) for _ in range(2)] == [True, False]
    assert RefusalBudget(None, lambda: 0.0)("POST /orders", a) is True


@pytest.fixture
def node(tmp_path, monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    s = load_settings(var_dir=tmp_path / "var", payment_timeout_s=60, trace_sample=0.0)
    seed_catalog(s)
    # the node's clock stands still: the refusal budget (5 a second per rule) never refills here
    n = build_node(s, port=18650, collectors=False, clock=FakeClock())
    yield n
    n.stop()


def test_a_traced_node_traces_a_refusal_only_within_the_blocked_budget(node):
    node.ctx.engine.apply(guardians.parse_document(
        {"flow": [{"name": "door-cap", "resource": "POST /orders", "threshold": 1}]}), version=2)
    client = TestClient(node.app)
    body = {"buyer_id": "b1", "tx_type": "fixed_price", "channel": "app",
            "lines": [{"sku": "ELEC-003", "qty": 1}], "address": ADDRESS}
    answers = [client.post("/orders", json={**body, "idempotency_key": f"k{i}"}) for i in range(40)]
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) >= 30
    # every answer names its trace: header, traceparent and problem body agree
    assert all(a.json()["trace_id"] == a.headers["x-trace-id"] for a in refused)
    assert all(a.headers["traceparent"].split("-")[1] == a.headers["x-trace-id"] for a in refused)
    assert len({a.headers["x-trace-id"] for a in refused}) == len(refused)
    tracing = node.ctx.tracing
    tracing.queue.flush()
    stored = [a for a in refused if tracing.store.spans(a.headers["x-trace-id"])]
    # the budget's first 5 refusals are traced inside (the tail sampler's budget: 5/s per rule) …
    assert stored == refused[:5]
    # … the rest answered at the door with the same problem; their traces are not stored
    assert all(a.json()["rule"] == "door-cap" for a in refused[5:])
    assert all(a.headers["retry-after"] for a in refused)
    # a caller's trace continues through a refusal at the door
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    again = client.post("/orders", json={**body, "idempotency_key": "k-caller"},
                        headers={"traceparent": f"00-{caller}-00f067aa0ba902b7-01"})
    assert again.status_code == 429
    assert again.headers["x-trace-id"] == caller and again.json()["trace_id"] == caller


def test_two_node_door_rules_are_cluster_rules_and_split_the_pace(tmp_path):
    out = door_rules(demo_rules_path(), tmp_path / "rules.yaml", 10, 3, nodes=2)
    doc = yaml.safe_load(out.read_text())
    rs = guardians.parse_document(doc)  # valid as a whole
    param = {r.name: r for r in rs.param}
    assert param["per-ip"].cluster and param["per-buyer-door"].cluster
    flow = {r.name: r for r in rs.flow}
    demo = {r.name: r for r in guardians.parse_document(yaml.safe_load(demo_rules_path().read_text())).flow}
    assert flow["gateway-pace"].threshold == demo["gateway-pace"].threshold / 2
    assert flow["gateway-backpressure"].threshold == round(demo["gateway-backpressure"].threshold / 2)
    fleet = flow["gateway-fleet"]
    assert fleet.cluster and fleet.threshold == demo["gateway-pace"].threshold
    one = yaml.safe_load(door_rules(demo_rules_path(), tmp_path / "one.yaml", 10, 3).read_text())
    assert not any(r.get("cluster") for r in one["param"] if r["name"] in ("per-ip", "per-buyer-door"))


def test_the_generator_sends_each_source_address_to_one_node(tmp_path):
    pools = [HttpPool("127.0.0.1", 1, max_connections=1, timeout_s=1, sources=4),
             HttpPool("127.0.0.1", 2, max_connections=1, timeout_s=1, sources=4)]
    gen = Generator(pools[0], ["A"], 1, tmp_path, buyers=100, pools=pools)
    seen: dict[str | None, set[int]] = {}
    for _ in range(200):
        body, source = gen._body("t")
        json.loads(body)  # valid JSON
        seen.setdefault(source, set()).add(gen._pool_of[source].port)
    assert len(seen) == 4 and all(len(ports) == 1 for ports in seen.values())
    assert {p for ports in seen.values() for p in ports} == {1, 2}
