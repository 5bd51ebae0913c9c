import asyncio
import json

from guardians import BreakerBlocked, FlowBlocked, parse_document
from guardians.http import GuardMiddleware, blocked_problem
from guardians.starlette_routes import starlette_route_resolver

from .helpers import engine


def run_asgi(app, method="POST", path="/orders", body=b'{"x":1}'):
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [],
        "query_string": b"",
        "root_path": "",
    }
    sent = []
    reads = []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg):
        sent.append(msg)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], headers, payload, len(reads)


def make_app(status=200, raise_exc=None):
    async def app(scope, receive, send):
        await receive()  # the app reads the body
        if raise_exc is not None:
            raise raise_exc
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def resolver(scope):
    return f"{scope['method']} /orders" if scope["path"].startswith("/orders") else None


def test_flow_block_answers_429_problem_json_before_the_body_is_read():
    eng, _clock = engine({"flow": [{"resource": "POST /orders", "threshold": 1, "name": "orders-qps"}]})
    mw = GuardMiddleware(make_app(), eng, resolver)
    assert run_asgi(mw)[0] == 200
    status, headers, payload, reads = run_asgi(mw)
    assert status == 429 and reads == 0
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["retry-after"]) >= 1
    body = json.loads(payload)
    assert body["status"] == 429 and body["rule"] == "orders-qps" and body["resource"] == "POST /orders"
    assert body["type"].endswith("flow-blocked") and body["rule_spec"]["threshold"] == 1
    # unguarded paths pass through
    assert run_asgi(mw, path="/health")[0] == 200


def test_breaker_opened_by_5xx_answers_503():
    eng, _clock = engine(
        {
            "breaker": [
                {"resource": "POST /orders", "strategy": "error_count", "threshold": 2, "min_requests": 1}
            ]
        }
    )
    mw = GuardMiddleware(make_app(status=502), eng, resolver)
    assert run_asgi(mw)[0] == 502
    assert run_asgi(mw)[0] == 502
    status, headers, payload, reads = run_asgi(mw)
    assert status == 503 and reads == 0
    assert json.loads(payload)["rule_type"] == "breaker"
    assert int(headers["retry-after"]) == 10


def test_blocked_raised_inside_the_app_is_answered_not_500():
    eng, _clock = engine({"flow": [{"resource": "payment.charge", "threshold": 1}]})
    eng.guard("payment.charge", lambda: None)
    try:
        eng.guard("payment.charge", lambda: None)
    except FlowBlocked as exc:
        inner = exc
    mw = GuardMiddleware(make_app(raise_exc=inner), eng, resolver)
    status, _headers, payload, _ = run_asgi(mw)
    assert status == 429 and json.loads(payload)["resource"] == "payment.charge"


def test_system_rules_apply_to_middleware_traffic():
    eng, _clock = engine({"system": [{"metric": "qps", "threshold": 2}]})
    mw = GuardMiddleware(make_app(), eng, resolver)
    assert [run_asgi(mw)[0] for _ in range(3)] == [200, 200, 429]
    assert eng.stats()["inbound"]["pass_qps"] == 2


def test_blocked_problem_statuses():
    _eng, _clock = engine({})
    rs = parse_document({"breaker": [{"resource": "p", "strategy": "error_count", "threshold": 1}]})
    status, headers, body = blocked_problem(BreakerBlocked("p", rs.breaker[0], 2.2))
    assert status == 503 and headers["retry-after"] == "3" and body["title"] == "Service Unavailable"
    status, headers, body = blocked_problem(FlowBlocked("p", None, 0.01))
    assert status == 429 and headers["retry-after"] == "1"


def test_starlette_route_resolver_with_fastapi_and_mounts():
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    api = FastAPI()

    @api.get("/orders/{order_id}")
    def get_order(order_id: str):
        return {}

    @api.post("/orders")
    def place():
        return {}

    resolve = starlette_route_resolver(api)
    scope = {"type": "http", "method": "GET", "path": "/orders/o-1", "root_path": ""}
    assert resolve(scope) == "GET /orders/{order_id}"
    assert resolve({**scope, "method": "POST", "path": "/orders"}) == "POST /orders"
    assert resolve({**scope, "method": "DELETE", "path": "/orders"}) is None
    assert resolve({**scope, "path": "/nope"}) is None

    async def hello(request):
        return PlainTextResponse("hi")

    app = Starlette(routes=[Mount("/api", routes=[Route("/items/{id}", hello)])])
    resolve2 = starlette_route_resolver(app)
    assert resolve2({"type": "http", "method": "GET", "path": "/api/items/7", "root_path": ""}) == (
        "GET /api/items/{id}"
    )


def test_starlette_route_resolver_sees_included_routers():
    from fastapi import APIRouter, FastAPI

    router = APIRouter(prefix="/ops")

    @router.get("/stats")
    def stats():
        return {}

    shops = APIRouter()

    @shops.get("/shops/{shop_id}/products")
    def products(shop_id: str):
        return {}

    api = FastAPI()
    api.include_router(router)
    api.include_router(shops, prefix="/v1")
    resolve = starlette_route_resolver(api)
    scope = {"type": "http", "method": "GET", "path": "/ops/stats", "root_path": ""}
    assert resolve(scope) == "GET /ops/stats"
    assert resolve({**scope, "path": "/v1/shops/s1/products"}) == "GET /v1/shops/{shop_id}/products"
    assert resolve({**scope, "path": "/v1/shops"}) is None


def test_middleware_in_a_real_fastapi_app():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    api = FastAPI()

    @api.post("/orders/{shop}")
    async def place(shop: str):
        return {"shop": shop}

    eng, _clock = engine({"flow": [{"resource": "POST /orders/{shop}", "threshold": 2}]})
    app = GuardMiddleware(api, eng, starlette_route_resolver(api))
    with TestClient(app) as client:
        codes = [client.post(f"/orders/s{i}").status_code for i in range(3)]
    assert codes == [200, 200, 429]


def test_add_middleware_without_resolver_uses_the_apps_routes():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    api = FastAPI()

    @api.get("/orders/{order_id}")
    async def get_order(order_id: str):
        return {"id": order_id}

    eng, _ = engine({"flow": [{"resource": "GET /orders/{order_id}", "threshold": 1}]})
    api.add_middleware(GuardMiddleware, engine=eng)
    with TestClient(api) as client:
        assert [client.get(f"/orders/{i}").status_code for i in range(2)] == [200, 429]
        assert client.get("/missing").status_code == 404


def test_client_ip_believes_forwarded_for_only_from_trusted_proxies_also_when_cached():
    from guardians.http import TrustedProxies, client_ip, request_args

    trusted = TrustedProxies("10.0.0.0/8, 127.0.0.1")

    def scope(peer: str, xff: bytes | None, name: bytes = b"x-forwarded-for") -> dict:
        headers = [(b"content-type", b"application/json")] + ([(name, xff)] if xff is not None else [])
        return {"type": "http", "client": (peer, 5000), "headers": headers}

    for _ in range(3):  # the second and third rounds answer from the caches
        assert client_ip(scope("127.0.0.1", b"203.0.113.7"), trusted) == "203.0.113.7"
        assert client_ip(scope("127.0.0.1", b"198.51.100.1, 203.0.113.7, 10.1.2.3"), trusted) == "203.0.113.7"
        assert client_ip(scope("127.0.0.1", b"10.9.9.9, 10.1.2.3"), trusted) == "10.9.9.9"  # all trusted
        assert client_ip(scope("127.0.0.1", b" , "), trusted) == "127.0.0.1"  # nothing named
        assert client_ip(scope("127.0.0.1", None), trusted) == "127.0.0.1"
        assert client_ip(scope("10.0.0.5", b"203.0.113.8", b"X-Forwarded-For"), trusted) == "203.0.113.8"
        # a stranger's header is never believed, whatever the cache holds for that value
        assert client_ip(scope("192.0.2.50", b"203.0.113.7"), trusted) == "192.0.2.50"
        assert client_ip(scope("192.0.2.50", b"203.0.113.7"), TrustedProxies()) == "192.0.2.50"
        assert request_args(scope("127.0.0.1", b"203.0.113.7"), "POST /orders", ("client_ip",), trusted) == {
            "client_ip": "203.0.113.7"
        }
    assert client_ip({"type": "http", "headers": []}, trusted) is None
    assert request_args({"type": "http", "headers": []}, "POST /orders", ("client_ip",), trusted) == {}


def test_client_ip_reads_headers_and_peers_of_any_shape_a_server_may_pass():
    """The typed path (a list of (bytes, bytes) tuples, a (host, port) tuple) and the generic one
    (lists as pairs, other iterables, a list as the client, a name not lowercased) answer alike."""
    from guardians.http import TrustedProxies, client_ip

    trusted = TrustedProxies("127.0.0.1")
    xff = b"203.0.113.7"
    shapes = [
        [(b"content-type", b"x"), (b"x-forwarded-for", xff)],
        [[b"content-type", b"x"], [b"x-forwarded-for", xff]],  # lists as header pairs
        ((b"content-type", b"x"), (b"x-forwarded-for", xff)),  # a tuple of pairs
        [(b"content-type", b"x"), (b"X-Forwarded-For", xff)],  # a server that does not lowercase
        [(b"x-forwarded-for", xff), (b"x-forwarded-for", b"198.51.100.9")],  # the first one counts
        [("x-forwarded-for", b"198.51.100.9"), (b"x-forwarded-for", xff)],  # a str name is not the header
        [(b"x-forwarded-for", xff, b"extra")],  # not a pair: read the generic way
    ]
    for headers in shapes:
        for client in (("127.0.0.1", 5000), ["127.0.0.1", 5000]):
            assert client_ip({"client": client, "headers": headers}, trusted) == "203.0.113.7", headers
    assert client_ip({"client": ("127.0.0.1", 5000), "headers": iter([(b"x-forwarded-for", xff)])},
                     trusted) == "203.0.113.7"
    assert client_ip({"client": (), "headers": []}, trusted) is None
    assert client_ip({"client": None, "headers": []}, trusted) is None
    assert client_ip({"client": ("127.0.0.1", 5000), "headers": None}, trusted) == "127.0.0.1"
