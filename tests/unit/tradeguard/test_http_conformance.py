"""HTTP conformance of a wired node, through the real app: what an OpenAPI fuzzer checks.

- a body that cannot be decoded answers a 400 problem+json, and the schema documents it;
- ``Allow`` (on ``OPTIONS`` and on every 405) lists every method of the path;
- every status a route answers — to good, broken and invalid requests, when blocked by a rule —
  is documented for that route in ``/openapi.json``.
"""

from __future__ import annotations

import re
import warnings

import pytest

import guardians
from tests.unit.tradeguard.test_bootstrap import order_body
from tradeguard.bootstrap import build_node, seed_catalog
from tradeguard.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOT_UTF8 = b'{"buyer_id": "\xc3"}'  # the bytes of no JSON text: the body cannot even be decoded
OPS_TOKEN = "conformance-token"
ANONYMOUS = {"Authorization": ""}  # overrides the client's bearer token: the control routes answer 401


@pytest.fixture
def node(tmp_path, monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    s = load_settings(var_dir=tmp_path / "var", payment_timeout_s=60, ops_token=OPS_TOKEN)
    seed_catalog(s)
    node = build_node(s, port=18200, collectors=False)
    yield node
    node.stop()


@pytest.fixture
def client(node):
    return TestClient(node.app, raise_server_exceptions=False,
                      headers={"Authorization": f"Bearer {OPS_TOKEN}"})


def documented(client) -> dict[tuple[str, str], set[int]]:
    """(METHOD, path template) → the statuses /openapi.json documents."""
    return {op: set(contents) for op, contents in documented_contents(client).items()}


def documented_contents(client) -> dict[tuple[str, str], dict[int, set[str]]]:
    """(METHOD, path template) → status → the media types /openapi.json documents for it."""
    paths = client.get("/openapi.json").json()["paths"]
    return {(m.upper(), p): {int(code): set(spec.get("content") or {})
                             for code, spec in op["responses"].items()}
            for p, ops in paths.items() for m, op in ops.items()}


def test_an_undecodable_body_is_a_400_problem_and_documented(client):
    for path, method in (("/orders", "POST"), ("/ops/chaos/payment", "PUT")):
        r = client.request(method, path, content=NOT_UTF8, headers={"content-type": "application/json"})
        assert r.status_code == 400, (method, path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["status"] == 400 and body["type"].endswith("/malformed-body") and body["detail"]
        assert 400 in documented(client)[(method, path)]


def test_options_and_405_carry_every_method_of_the_path(client):
    r = client.options("/ops/chaos/payment")
    assert r.status_code == 204
    assert set(re.split(r",\s*", r.headers["allow"])) == {"GET", "PUT", "OPTIONS"}
    wrong = client.delete("/ops/chaos/payment")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert set(re.split(r",\s*", wrong.headers["allow"])) == {"GET", "PUT", "OPTIONS"}
    assert set(re.split(r",\s*", client.options("/orders/o_1").headers["allow"])) == {"GET", "OPTIONS"}
    assert client.options("/no/such/path").status_code == 404


def test_allow_matches_the_schema_for_every_path(client):
    docs = documented(client)
    for path in {p for _, p in docs}:
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        allow = set(re.split(r",\s*", client.options(concrete).headers["allow"]))
        assert allow - {"OPTIONS"} == {m for m, p in docs if p == path}, path


def requests_for(method: str, path: str, ids: dict[str, str]) -> list[dict]:
    """Good, unknown, broken and invalid requests for one operation."""
    real = path.format(**ids)
    unknown = re.sub(r"\{[^}]+\}", "nope", path)
    out: list[dict] = [{"url": real}, {"url": unknown}, {"url": real, "headers": ANONYMOUS}]
    if method in ("POST", "PUT"):
        json_ct = {"content-type": "application/json"}
        out += [
            {"url": real, "content": NOT_UTF8, "headers": json_ct},
            {"url": real, "content": b"{not json", "headers": json_ct},
            {"url": real, "json": {}},
            {"url": real, "json": {"lines": [{"sku": "ELEC-001", "qty": -1}], "latency_ms": -5}},
        ]
    if path == "/orders":
        out.append({"url": real, "json": order_body(key="conf-1")})
        out.append({"url": real, "json": order_body(key="conf-1", sku="ELEC-002")})  # key reused: 409
    if path.endswith("/refunds"):
        out.append({"url": real, "json": {"lines": [{"sku": "ELEC-001", "qty": 1}]}})
    return out


def test_every_answer_of_every_route_is_documented(node, client):
    order = client.post("/orders", json=order_body(key="seed")).json()["id"]
    ids = {"order_id": order, "refund_id": "r_none", "shop_id": "acme-electronics", "sub_order_id": "so_none",
           "auction_id": "au_none"}
    contents = documented_contents(client)
    docs = {op: set(by_status) for op, by_status in contents.items()}
    seen: dict[tuple[str, str], set[int]] = {op: set() for op in docs}
    wrong_type: set[str] = set()

    def sweep() -> None:
        for method, path in docs:
            for req in requests_for(method, path, ids):
                r = client.request(method, **req)
                seen[(method, path)].add(r.status_code)
                media = r.headers.get("content-type", "").split(";")[0]
                expected = contents[(method, path)].get(r.status_code)
                if expected and media not in expected:  # the body is not what the schema says
                    wrong_type.add(f"{method} {path} {r.status_code}: {media}, documented {sorted(expected)}")

    sweep()
    # then every trading route blocked by a flow rule (1 call per second: the second is a 429)
    trading = [(m, p) for m, p in docs if not p.startswith("/ops")]
    flow = [{"resource": f"{m} {p}", "grade": "qps", "threshold": 1} for m, p in trading]
    node.ctx.engine.apply(guardians.parse_document({"flow": flow}), version=7)
    sweep()
    # and with the trading DB down as /ops/health sees it (its 503)
    node.ctx.health_checks["trading_db"] = lambda: {"status": "error", "error": "unreachable"}
    sweep()

    undocumented = {f"{m} {p}": sorted(codes - docs[(m, p)]) for (m, p), codes in seen.items()
                    if codes - docs[(m, p)]}
    assert undocumented == {}
    assert wrong_type == set()
    every = set().union(*seen.values())
    assert every >= {200, 201, 400, 401, 404, 409, 422, 429, 503}  # the sweep did reach those answers
