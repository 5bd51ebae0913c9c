"""Call-chain tracing of a node, driven in-process (TestClient) on SQLite files in tmp_path.

Kept traces are drained from the export queue by hand (``queue.flush()``): the node is not
started, so no background thread runs and every assertion sees a settled store.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry import trace

from tradeguard.bootstrap import build_node, seed_catalog
from tradeguard.settings import load_settings
from tradeguard.tracing import (
    ExportQueue,
    KeptTrace,
    SlowThresholds,
    SpanStore,
    TraceQuery,
    format_waterfall,
    span_record,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADDRESS = {
    "country": "CN",
    "province": "Zhejiang",
    "city": "Hangzhou",
    "district": "Xihu",
    "street": "1 Lake Road",
    "recipient": "Li",
    "phone": "13800000000",
}
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def order_body(key: str = "k1", sku: str = "ELEC-001") -> dict:
    return {"buyer_id": "b1", "tx_type": "fixed_price", "channel": "app",
            "lines": [{"sku": sku, "qty": 1}], "address": ADDRESS, "idempotency_key": key}


@pytest.fixture
def make_node(tmp_path, monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            monkeypatch.delenv(key)
    nodes = []

    def make(**overrides):
        s = load_settings(var_dir=tmp_path / "var", gateway_latency_ms=1, **overrides)
        if not nodes:
            seed_catalog(s)
        node = build_node(s, port=18700 + len(nodes), collectors=False)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def kept(node):
    tracing = node.ctx.tracing
    tracing.queue.flush()
    return tracing


def by_name(spans, name):
    found = [s for s in spans if s.name == name]
    assert found, f"no span {name!r} among {[s.name for s in spans]}"
    return found


def test_an_order_placed_and_paid_is_one_trace_with_parented_spans(make_node):
    node = make_node(trace_sample=1.0)
    client = TestClient(node.app)
    parent = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    placed = client.post("/orders", json=order_body(), headers=parent)
    assert placed.status_code == 201
    order_id = placed.json()["id"]
    paid = client.post(f"/orders/{order_id}/pay", headers=parent)
    assert paid.status_code == 200
    # the caller's trace continues in both answers
    assert placed.headers["x-trace-id"] == paid.headers["x-trace-id"] == CALLER_TRACE
    assert placed.headers["traceparent"].startswith(f"00-{CALLER_TRACE}-")

    spans = kept(node).store.spans(CALLER_TRACE)
    ids = {s.span_id: s for s in spans}
    (route_place,) = by_name(spans, "POST /orders")
    (route_pay,) = by_name(spans, "POST /orders/{order_id}/pay")
    assert route_place.parent_id == route_pay.parent_id == CALLER_SPAN
    assert route_place.kind == route_pay.kind == "server"
    (place,) = by_name(spans, "order.place")
    assert place.parent_id == route_place.span_id
    assert place.attributes["tradeguard.guard.decision"] == "passed"
    (reserve,) = by_name(spans, "inventory.reserve")
    assert reserve.parent_id == place.span_id
    (pay,) = by_name(spans, "order.pay")
    assert pay.parent_id == route_pay.span_id
    (charge,) = by_name(spans, "payment.charge")
    assert charge.parent_id == pay.span_id and charge.kind == "client"
    assert charge.attributes["peer.service"] == "payment-gateway"
    db = [s for s in spans if "db.system" in s.attributes or "db.system.name" in s.attributes]
    assert any(ids[s.parent_id].name == "inventory.reserve" and s.name.startswith("UPDATE") for s in db)
    assert all(s.parent_id in ids for s in db)
    # every span of the trace hangs under one of the two route spans
    for s in spans:
        top = s
        while top.parent_id in ids:
            top = ids[top.parent_id]
        assert top in (route_place, route_pay)
    summaries = node.ctx.tracing.store.search(TraceQuery(order_id=order_id))
    assert [t.trace_id for t in summaries] == [CALLER_TRACE]
    text = format_waterfall(spans)
    assert "payment.charge" in text and "order.place" in text


def test_a_blocked_request_trace_names_the_rule_at_sample_zero(make_node):
    import guardians

    node = make_node(trace_sample=0.0)
    flow = [{"name": "place-cap", "resource": "order.place", "grade": "qps", "threshold": 1},
            {"name": "door-cap", "resource": "GET /shops", "grade": "qps", "threshold": 1}]
    node.ctx.engine.apply(guardians.parse_document({"flow": flow}), version=3)
    client = TestClient(node.app)
    answers = [client.post("/orders", json=order_body(key=f"k{i}")) for i in range(3)]
    blocked = answers[-1]
    assert blocked.status_code == 429
    doors = [client.get("/shops") for _ in range(3)]
    assert doors[-1].status_code == 429
    tracing = kept(node)

    tid = blocked.json()["trace_id"]
    assert tid == blocked.headers["x-trace-id"]
    (place,) = by_name(tracing.store.spans(tid), "order.place")
    assert place.attributes["tradeguard.guard.decision"] == "blocked"
    assert place.attributes["tradeguard.guard.rule"] == "place-cap"
    (summary,) = tracing.store.search(TraceQuery(trace_id=tid))
    assert summary.outcome == "blocked" and summary.rule == "place-cap"
    # refused at the door by GuardMiddleware: the route span names the rule
    door_tid = doors[-1].json()["trace_id"]
    (route,) = by_name(tracing.store.spans(door_tid), "GET /shops")
    assert route.attributes["tradeguard.guard.rule"] == "door-cap"
    # the passed ones were not kept at rate 0
    assert tracing.store.search(TraceQuery(trace_id=answers[0].headers["x-trace-id"])) == []


def test_a_payment_failure_is_kept_at_sample_zero_and_the_problem_names_the_stored_trace(make_node):
    node = make_node(trace_sample=0.0)
    client = TestClient(node.app)
    placed = client.post("/orders", json=order_body())
    node.ctx.gateway.configure(error_rate=1.0)
    failed = client.post(f"/orders/{placed.json()['id']}/pay")
    assert failed.status_code == 402
    tid = failed.json()["trace_id"]
    assert tid == failed.headers["x-trace-id"]
    tracing = kept(node)
    (summary,) = tracing.store.search(TraceQuery(outcome="error"))
    assert summary.trace_id == tid
    (charge,) = by_name(tracing.store.spans(tid), "payment.charge")
    assert charge.status == "error"
    assert tracing.store.search(TraceQuery(trace_id=placed.headers["x-trace-id"])) == []


def test_every_response_carries_a_trace_id_and_problem_bodies_match_the_store(make_node):
    node = make_node(trace_sample=1.0)
    client = TestClient(node.app)
    missing = client.get("/orders/nope")
    assert missing.status_code == 404
    tid = missing.json()["trace_id"]
    assert len(tid) == 32 and tid == missing.headers["x-trace-id"]
    invalid = client.post("/orders", json={"buyer_id": "b1"})
    assert invalid.status_code == 422 and invalid.json()["trace_id"] == invalid.headers["x-trace-id"]
    health = client.get("/ops/health")
    assert len(health.headers["x-trace-id"]) == 32
    tracing = kept(node)
    assert [t.trace_id for t in tracing.store.search(TraceQuery(trace_id=tid))] == [tid]
    assert health.json()["stores"]["tracing"]["sink"] == "store"


def test_tracing_off_adds_no_header(make_node, tmp_path):
    s = load_settings(var_dir=tmp_path / "var2")
    seed_catalog(s)
    node = build_node(s, port=18790, collectors=False, tracing=False)
    try:
        answer = TestClient(node.app).get("/orders/nope")
        assert "x-trace-id" not in answer.headers and "trace_id" not in answer.json()
        assert node.ctx.parts["tracing"] == "off"
    finally:
        node.stop()


# ----------------------------------------------------------------------------- OTLP
class _Receiver:
    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.requests: list = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                msg = ExportTraceServiceRequest()
                msg.ParseFromString(body)
                received.append((self.path, self.headers.get("content-type"), msg))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_otlp_export_is_real_protobuf(make_node):
    receiver = _Receiver()
    try:
        node = make_node(trace_sample=1.0, otlp_endpoint=receiver.url)
        answer = TestClient(node.app).post("/orders", json=order_body())
        assert answer.status_code == 201
        tracing = kept(node)
        assert tracing.sink == "otlp" and tracing.queue.dropped == 0
    finally:
        receiver.close()
    (path, ctype, msg), = receiver.requests
    assert path == "/v1/traces" and ctype == "application/x-protobuf"
    spans = [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]
    names = {s.name for s in spans}
    assert {"POST /orders", "order.place", "inventory.reserve"} <= names
    assert {s.trace_id.hex() for s in spans} == {answer.headers["x-trace-id"]}
    service = {a.key: a.value.string_value for rs in msg.resource_spans for a in rs.resource.attributes}
    assert service["service.name"].startswith("tradeguard-node")


def test_otlp_receiver_down_leaves_requests_alone_and_counts_drops(make_node):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    node = make_node(trace_sample=1.0, otlp_endpoint=f"http://127.0.0.1:{port}")
    node.start()
    try:
        client = TestClient(node.app)
        started = time.perf_counter()
        answers = [client.post("/orders", json=order_body(key=f"k{i}")) for i in range(5)]
        elapsed = time.perf_counter() - started
        assert [a.status_code for a in answers] == [201] * 5
        assert elapsed < 5.0  # the export timeout is 2 s: no request waited for it
        deadline = time.monotonic() + 15
        while node.ctx.tracing.queue.dropped < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = client.get("/ops/health").json()["stores"]["tracing"]
        # at least: the 5 orders' traces (the health calls may add theirs) in as many export batches
        # as the exporter thread happened to form, each failing
        assert stats["dropped"] >= 5 and stats["export_failures"] >= 1
        assert stats["status"] == "ok"  # a collector down never takes the node out of rotation
    finally:
        node.stop()


# ----------------------------------------------------------------------------- parts
def test_export_queue_drops_the_oldest_and_never_blocks():
    exported: list[list[str]] = []
    q = ExportQueue(lambda items: exported.append([i.outcome for i in items]), maxlen=3, batch=10)
    for n in range(5):
        q.put(KeptTrace([], f"t{n}"))
    assert q.dropped == 2
    q.flush()
    assert exported == [["t2", "t3", "t4"]]

    def boom(items):
        raise ConnectionError("collector down")

    failing = ExportQueue(boom, maxlen=10)
    failing.put(KeptTrace([], "x"))
    failing.flush()
    assert failing.dropped == 1 and "collector down" in failing.status()["last_error"]


def test_slow_threshold_is_the_recent_p99_per_resource():
    th = SlowThresholds(window=200, every=10, min_count=100)
    assert not any(th.observe("GET /a", 10.0 + (i % 10)) for i in range(100))
    assert th.threshold("GET /a") == pytest.approx(19.0)
    assert th.observe("GET /a", 50.0)
    assert not th.observe("GET /b", 500.0)  # another resource, nothing known yet
    fixed = SlowThresholds({"GET /a": 5.0})
    assert fixed.observe("GET /a", 6.0)


def test_slow_threshold_is_always_the_nearest_rank_p99_of_the_last_window():
    import random

    from common.stats import percentile

    rng = random.Random(3)
    th = SlowThresholds(window=150, min_count=100)
    seen: list[float] = []
    for i in range(600):
        value = rng.choice((rng.expovariate(1.0), 5.0, float(i % 7)))  # ties and a load change
        expected = percentile(seen[-150:], 99.0) if len(seen) >= 100 else None
        assert th.threshold("r") == expected
        assert th.observe("r", value) is (expected is not None and value > expected)
        seen.append(value)
    assert th.threshold("r") == percentile(seen[-150:], 99.0)
    with pytest.raises(ValueError):
        SlowThresholds(window=0)


def test_the_keep_decision_reads_flags_set_as_spans_become_error_or_blocked(tmp_path):
    from tradeguard.tracing import ATTR_DECISION, ATTR_RULE

    tracing = _lone_tracing(tmp_path, 0.0)
    sink: list[KeptTrace] = []
    tracing.sampler.sink = sink.append
    tracer = tracing.tracer
    with tracer.start_as_current_span("GET /a") as root:
        with tracer.start_as_current_span("inner") as inner:
            inner.set_attribute(ATTR_DECISION, "degraded")
            inner.set_attribute(ATTR_RULE, "r1")
        assert root.blocked and not root.error
    with tracer.start_as_current_span("GET /b") as root:
        with tracer.start_as_current_span("inner") as inner:
            inner.set_status(trace.StatusCode.ERROR, "boom")
        assert root.error
    with tracer.start_as_current_span("GET /c") as root:  # ERROR, then OK (final): not an error
        root.set_status(trace.StatusCode.ERROR)
        root.set_status(trace.StatusCode.OK)
    with tracer.start_as_current_span("GET /d", attributes={ATTR_DECISION: "blocked"}):
        pass
    with tracer.start_as_current_span("GET /e"):
        pass
    assert [k.outcome for k in sink] == ["blocked", "error", "blocked"]
    assert tracing.sampler.counts["traces"] == 5
    tracing.stop()


def test_store_rows_made_straight_from_deferred_spans_equal_those_of_the_sdk_spans(tmp_path):
    from dataclasses import replace

    from tradeguard.tracing import TracingGuard, instrument_redis, span_record

    tracing = _lone_tracing(tmp_path, 1.0)
    sink: list[KeptTrace] = []
    tracing.sampler.sink = sink.append
    redis = _FakeRedis()
    instrument_redis(redis, tracing.calls)

    class Engine:
        def guard(self, resource, call, *, args=None, fallback=None):
            return call()

    root = tracing.tracer.span("POST /orders", None, trace.SpanKind.SERVER, {"tags": ["a", "b"]})
    root.http = ("POST", "/orders", b"/orders/ord-9")
    with trace.use_span(root, end_on_exit=True):
        TracingGuard(Engine(), tracing.tracer).guard(
            "order.place", lambda: redis.execute_command("GET", "k"), args={"sku": "E-1"})
    (kept_trace,) = sink
    direct = kept_trace.records("n1")
    via_sdk = [span_record(s, "n1") for s in kept_trace.spans]

    def comparable(rows):  # a call's own span id is drawn when it is built
        return sorted((replace(r, span_id="-") if r.kind == "client" else r for r in rows),
                      key=lambda r: r.name)

    assert comparable(direct) == comparable(via_sdk)
    by = {r.name: r for r in direct}
    assert by["POST /orders"].attributes["tradeguard.order_id"] == "ord-9"
    assert by["order.place"].attributes["tradeguard.arg.sku"] == "E-1"
    assert by["redis GET"].parent_id == by["order.place"].span_id
    tracing.stop()


def test_span_store_prunes_by_count_and_age(tmp_path):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for _ in range(5):
        with tracer.start_as_current_span("GET /x"):
            pass
    records = [span_record(s, "n1") for s in exporter.get_finished_spans()]
    now = [max(r.start_ns for r in records) / 1e9]
    store = SpanStore(tmp_path / "traces.db", max_traces=3, max_age_s=3600, prune_every=1000,
                      clock=lambda: now[0])
    store.write([([r], "sampled") for r in records])
    assert store.prune() == 2
    kept_ids = {t.trace_id for t in store.search(TraceQuery())}
    newest = sorted(records, key=lambda r: r.start_ns)[-3:]
    assert kept_ids == {r.trace_id for r in newest}
    now[0] += 7200
    assert store.prune() == 3
    assert store.status()["evicted"] == 5 and store.search(TraceQuery()) == []
    store.close()


def test_json_log_lines_carry_the_trace_id_of_the_request(monkeypatch):
    from tradeguard.cli import setup_logging

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("INFO", environ={"TRADEGUARD_OPS_TOKEN": "s3cr3t-token"}, fmt="json")
    try:
        tracer = trace.get_tracer("t")
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("req") as span:
            logging.getLogger("tradeguard.x").warning("charging with s3cr3t-token")
            tid = f"{span.get_span_context().trace_id:032x}"
        logging.getLogger("tradeguard.x").warning("outside")
    finally:
        setup_logging("INFO", environ={}, fmt="text")
    lines = [json.loads(x) for x in stream.getvalue().splitlines() if x.startswith("{")]
    inside, outside = lines[-2], lines[-1]
    assert inside["trace_id"] == tid and len(inside["span_id"]) == 16
    assert "s3cr3t-token" not in inside["message"]
    assert "trace_id" not in outside


def test_cli_traces_show_prints_the_waterfall(make_node, tmp_path, monkeypatch, capsys):
    from tradeguard.cli import main

    node = make_node(trace_sample=1.0)
    answer = TestClient(node.app).post("/orders", json=order_body())
    kept(node)
    monkeypatch.setenv("TRADEGUARD_VAR_DIR", str(tmp_path / "var"))
    assert main(["traces", "show", answer.headers["x-trace-id"]]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"trace {answer.headers['x-trace-id']}")
    assert lines[1].startswith("POST /orders ") and lines[2].startswith("  order.place ")
    assert "decision=passed" in lines[2]
    assert main(["traces", "show", "0" * 32]) == 1
    assert main(["traces", "show", "nope"]) == 2
    assert main(["traces", "find", "--order", answer.json()["id"], "--json"]) == 0
    found = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [f["trace_id"] for f in found] == [answer.headers["x-trace-id"]]


def test_db_statements_are_recorded_cheaply_and_built_only_for_kept_traces(make_node):
    node = make_node(trace_sample=0.0)
    client = TestClient(node.app)
    for i in range(3):
        assert client.post("/orders", json=order_body(f"cheap-{i}")).status_code == 201
    tracing = kept(node)
    sampler = tracing.sampler
    assert sampler.counts["traces"] >= 3
    # nothing kept, nothing left behind: the statement records of forgotten traces are gone
    assert sampler._calls == {} and len(sampler._pending) == 0
    assert tracing.store.status()["traces"] == 0
    # at 100 % the same request's statements are CLIENT spans under the guard spans
    full = make_node(trace_sample=1.0)
    placed = TestClient(full.app).post("/orders", json=order_body("cheap-full"))
    spans = kept(full).store.spans(placed.headers["x-trace-id"])
    ids = {s.span_id: s for s in spans}
    db = [s for s in spans if s.attributes.get("db.system") == "sqlite"]
    assert len(db) >= 3 and all(s.kind == "client" and s.parent_id in ids for s in db)
    assert all(s.attributes["db.statement"].split()[0].upper() == s.name.split()[0] for s in db)
    assert len({s.span_id for s in db}) == len(db)


def _lone_tracing(tmp_path, sample):
    from tradeguard.tracing import build_tracing

    return build_tracing(instance="n1", service_name="t", sample=sample, store_path=tmp_path / "t.db")


def test_a_failed_statement_or_redis_command_keeps_the_trace_at_sample_zero(tmp_path):
    from sqlalchemy import create_engine, text

    from tradeguard.tracing import instrument_redis

    tracing = _lone_tracing(tmp_path, 0.0)
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    tracing.instrument_engine(engine)

    class FakeRedis:
        def execute_command(self, *args, **options):
            if args[0] == "BOOM":
                raise ConnectionError("redis://:s3cret@h:6379 refused")
            return "v"

    redis = FakeRedis()
    assert instrument_redis(redis, tracing.calls) and not instrument_redis(redis, tracing.calls)
    tracer = tracing.tracer
    with tracer.start_as_current_span("GET /fine") as fine, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        assert redis.execute_command("GET", "k") == "v"
    from sqlalchemy.exc import OperationalError

    with tracer.start_as_current_span("GET /bad") as bad, engine.connect() as conn, \
            pytest.raises(OperationalError):
        conn.execute(text("SELECT * FROM no_such_table"))
    with tracer.start_as_current_span("GET /redis") as red, pytest.raises(ConnectionError):
        redis.execute_command("BOOM")
    redis.execute_command("GET", "outside")  # no trace: not recorded
    tracing.queue.flush()
    store = tracing.store
    fine_id, bad_id, red_id = (f"{s.get_span_context().trace_id:032x}" for s in (fine, bad, red))
    assert store.spans(fine_id) == []  # forgotten at rate 0
    (failed,) = [s for s in store.spans(bad_id) if s.kind == "client"]
    assert failed.status == "error" and "no_such_table" in failed.status_message
    assert failed.name == "SELECT x.db"
    (cmd,) = [s for s in store.spans(red_id) if s.kind == "client"]
    assert cmd.name == "redis BOOM" and cmd.attributes["peer.service"] == "redis"
    assert "s3cret" not in cmd.status_message  # redacted
    assert tracing.sampler._calls == {}
    tracing.stop()
    engine.dispose()


def test_metric_store_writes_are_a_span_per_batch_on_the_service_map(tmp_path):
    from console.services.traces import service_map
    from tradeguard.tracing import TraceReader

    tracing = _lone_tracing(tmp_path, 1.0)

    class Store:
        def __init__(self):
            self.batches = []

        def write(self, points):
            if not points:
                raise OSError("store down")
            self.batches.append(points)

    class Flusher:
        store = Store()

    flusher = Flusher()
    inner = flusher.store
    tracing.instrument_metric_store(flusher, "sqlite")
    tracing.instrument_metric_store(flusher, "sqlite")  # once only
    assert flusher.store.inner is inner and not hasattr(flusher.store, "write_lines")
    flusher.store.write([1, 2, 3])
    with pytest.raises(OSError):
        flusher.store.write([])
    assert inner.batches == [[1, 2, 3]]
    tracing.queue.flush()
    edges, errors = service_map(TraceReader(tracing.store), time.time_ns() + 10**9)
    (edge,) = [e for e in edges if e.target == "metric-store"]
    assert errors == [] and edge.calls == 2 and edge.error_rate_pct == 50.0
    tracing.stop()


def test_blocked_traces_are_all_counted_but_kept_within_a_per_rule_budget():
    from opentelemetry.sdk.trace import TracerProvider

    from tradeguard.tracing import ATTR_DECISION, ATTR_RESOURCE, ATTR_RULE, TailSamplingProcessor

    now = [100.0]
    sink: list[KeptTrace] = []
    sampler = TailSamplingProcessor(sink.append, rate=0.0, thresholds=SlowThresholds(),
                                    blocked_per_s=2, clock=lambda: now[0])
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    tracer = provider.get_tracer("t")

    def refuse(rule: str) -> None:
        with tracer.start_as_current_span("POST /orders") as span:
            span.set_attribute(ATTR_RESOURCE, "POST /orders")
            span.set_attribute(ATTR_DECISION, "blocked")
            span.set_attribute(ATTR_RULE, rule)

    for _ in range(5):
        refuse("per-ip")
    refuse("per-buyer")  # another rule has its own budget
    assert [k.spans[0].attributes[ATTR_RULE] for k in sink] == ["per-ip", "per-ip", "per-buyer"]
    assert sampler.counts["blocked"] == 6 and sampler.counts["blocked_over_budget"] == 3
    now[0] += 0.5  # half a second refills one token
    refuse("per-ip")
    refuse("per-ip")
    assert len(sink) == 4 and sampler.counts["blocked_over_budget"] == 4
    with pytest.raises(ValueError, match="blocked_per_s"):
        TailSamplingProcessor(sink.append, rate=0.0, thresholds=SlowThresholds(), blocked_per_s=0)
    unbounded = TailSamplingProcessor(sink.append, rate=0.0, thresholds=SlowThresholds(), blocked_per_s=None)
    provider2 = TracerProvider()
    provider2.add_span_processor(unbounded)
    tracer = provider2.get_tracer("t")
    for _ in range(4):
        refuse("per-ip")
    assert unbounded.counts["blocked"] == 4 and unbounded.counts["blocked_over_budget"] == 0


def test_spans_of_forgotten_traces_are_never_built_and_kept_ones_are_sdk_spans(tmp_path):
    from opentelemetry.sdk.trace import ReadableSpan

    from tradeguard.tracing import DeferredSpan, TracingGuard

    class Engine:
        def guard(self, resource, call, *, args=None, fallback=None):
            return call()

    built: list[str] = []
    original = DeferredSpan.readable

    def counting(self):
        built.append(self.name)
        return original(self)

    DeferredSpan.readable = counting
    try:
        for sample, expect_kept in ((0.0, False), (1.0, True)):
            tracing = _lone_tracing(tmp_path / str(sample), sample)
            sink: list[KeptTrace] = []
            tracing.sampler.sink = sink.append
            guard = TracingGuard(Engine(), tracing.tracer)
            with tracing.tracer.start_as_current_span("POST /orders", attributes={"tags": ["a", "b"]}):
                assert guard.guard("order.place", lambda: 7, args={"sku": ("ELEC-1",)}) == 7
                with tracing.tracer.start_as_current_span("lookup") as lookup:
                    lookup.add_event("cache miss", {"key": "k"})
            assert bool(sink) is expect_kept
            assert tracing.sampler.counts["traces"] == 1 and len(tracing.sampler._pending) == 0
            tracing.stop()
        assert built == []  # nothing built on the request path, a kept trace's neither
        (trace_,) = sink
        assert all(isinstance(s, ReadableSpan) for s in trace_.spans)  # built when read (export thread)
        assert sorted(built) == ["POST /orders", "lookup", "order.place"]  # the kept trace's only
        by = {s.name: s for s in trace_.spans}
        assert by["order.place"].attributes["tradeguard.arg.sku"] == "('ELEC-1',)"  # args expanded lazily
        assert by["order.place"].attributes["tradeguard.guard.decision"] == "passed"
        assert by["order.place"].parent.span_id == by["POST /orders"].context.span_id
        assert by["POST /orders"].attributes["tags"] == ("a", "b")  # cleaned like an SDK span's
        assert [(e.name, dict(e.attributes)) for e in by["lookup"].events] == [("cache miss", {"key": "k"})]
        # an exception leaving start_as_current_span: recorded and ERROR, as the SDK's use_span does
        tracing = _lone_tracing(tmp_path / "err", 0.0)
        tracing.sampler.sink = sink.append
        with pytest.raises(KeyError), tracing.tracer.start_as_current_span("lookup"):
            raise KeyError("nope")
        failed = sink[-1].spans[0]
        assert sink[-1].outcome == "error" and failed.status.status_code.name == "ERROR"
        assert [e.name for e in failed.events] == ["exception"]
        tracing.stop()
    finally:
        DeferredSpan.readable = original


def test_route_span_marks_server_errors_and_continues_a_caller_with_baggage(tmp_path):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    def boom(request):
        raise RuntimeError("postgresql://app:hunter2@db/x lost")

    def fine(request):
        from opentelemetry import baggage

        return PlainTextResponse(str(baggage.get_baggage("tenant")))

    tracing = _lone_tracing(tmp_path, 0.0)
    app = Starlette(routes=[Route("/boom", boom), Route("/fine", fine)])
    tracing.route_name = lambda scope: f"GET {scope['path']}"
    tracing.instrument_app(app)
    client = TestClient(app, raise_server_exceptions=False)
    failed = client.get("/boom")
    assert failed.status_code == 500 and len(failed.headers["x-trace-id"]) == 32
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "baggage": "tenant=acme"}
    ok = client.get("/fine", headers=caller)
    assert ok.text == "acme" and ok.headers["x-trace-id"] == CALLER_TRACE
    tracing.queue.flush()
    (route,) = tracing.store.spans(failed.headers["x-trace-id"])  # kept at rate 0: an error
    assert route.kind == "server" and route.status == "error" and "hunter2" not in route.status_message
    assert route.attributes["http.response.status_code"] == 500
    assert route.attributes["http.route"] == "/boom"
    assert route.attributes["tradeguard.resource"] == "GET /boom"
    assert tracing.store.spans(CALLER_TRACE) == []  # a fine request at rate 0 is forgotten
    tracing.stop()


def test_route_span_with_an_sdk_tracer_names_the_order_and_the_rule_of_a_refusal():
    """The middleware under any OpenTelemetry tracer (here the SDK's): same headers and bodies."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from tradeguard.tracing import RouteSpanMiddleware

    def place(request):
        return Response(status_code=201, headers={"Location": "/orders/o-42"})

    def refused(request):
        doc = {"title": "blocked", "rule": "per-ip", "rule_type": "param", "detail": "5/s per client_ip"}
        return JSONResponse(doc, status_code=429, media_type="application/problem+json")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Starlette(routes=[Route("/orders", place, methods=["POST"]), Route("/limited", refused)])
    client = TestClient(RouteSpanMiddleware(app, provider.get_tracer("t")))
    placed = client.post("/orders")
    blocked = client.get("/limited")
    assert placed.status_code == 201 and len(placed.headers["x-trace-id"]) == 32
    assert blocked.status_code == 429 and blocked.json()["trace_id"] == blocked.headers["x-trace-id"]
    assert blocked.json()["rule"] == "per-ip"
    assert int(blocked.headers["content-length"]) == len(blocked.content)
    spans = {f"{s.context.trace_id:032x}": s for s in exporter.get_finished_spans()}
    assert spans[placed.headers["x-trace-id"]].attributes["tradeguard.order_id"] == "o-42"
    refusal = spans[blocked.headers["x-trace-id"]].attributes
    assert refusal["tradeguard.guard.rule"] == "per-ip" and refusal["http.response.status_code"] == 429
    traceparent = blocked.headers["traceparent"].split("-")
    assert traceparent[1] == blocked.headers["x-trace-id"]


class _FakeRedis:
    def execute_command(self, *args, **options):
        return "v"


def test_a_forgotten_trace_is_freed_without_the_cyclic_gc_and_the_current_span_is_otels(tmp_path):
    import gc
    import weakref

    from opentelemetry import context as context_api

    from tradeguard.tracing import TracingGuard, current_ids, instrument_redis
    from tradeguard.tracing import spans as tracing_module

    tracing = _lone_tracing(tmp_path, 0.0)
    redis = _FakeRedis()
    instrument_redis(redis, tracing.calls)
    seen = {}

    class Engine:
        def guard(self, resource, call, *, args=None, fallback=None):
            return call()

    def place():
        redis.execute_command("GET", "k")
        seen["inner"] = current_ids()  # what a log line of the request shows
        seen["same_context"] = tracing_module._current_context() is context_api.get_current()
        return 1

    guard = TracingGuard(Engine(), tracing.tracer)
    gc.disable()  # a reference cycle would keep the trace alive until the collector ran
    try:
        with tracing.tracer.start_as_current_span("POST /orders") as root:
            assert guard.guard("order.place", place) == 1
            seen["root"] = current_ids()
        ref = weakref.ref(root)
        del root
        assert ref() is None
    finally:
        gc.enable()
    assert seen["inner"][0] == seen["root"][0] and seen["inner"][1] != seen["root"][1]
    assert seen["same_context"]  # the hot paths' getter reads OpenTelemetry's own current context
    assert tracing.sampler.counts["traces"] == 1 and tracing.sampler.counts["sampled"] == 0
    tracing.stop()


def test_spans_of_the_sdk_and_deferred_ones_mix_in_one_kept_trace(tmp_path):
    from tradeguard.tracing import TracingGuard, instrument_redis

    tracing = _lone_tracing(tmp_path, 1.0)
    sink: list[KeptTrace] = []
    tracing.sampler.sink = sink.append
    redis = _FakeRedis()
    instrument_redis(redis, tracing.calls)
    sdk = tracing.provider.get_tracer("sdk")

    class Engine:
        def guard(self, resource, call, *, args=None, fallback=None):
            return call()

    def place():
        redis.execute_command("SET", "k", "v")
        return 1

    guard = TracingGuard(Engine(), tracing.tracer)
    # an SDK root (a job's span) with a deferred guard span under it, and its Redis call
    with sdk.start_as_current_span("job"):
        guard.guard("order.place", place)
    # a deferred root with an SDK span under it, and a Redis call under that
    with tracing.tracer.start_as_current_span("POST /orders"), sdk.start_as_current_span("lookup"):
        redis.execute_command("GET", "k")
    assert [k.outcome for k in sink] == ["sampled", "sampled"]
    expected = (("job", "order.place", "redis SET"), ("POST /orders", "lookup", "redis GET"))
    for kept_trace, names in zip(sink, expected, strict=True):
        by = {s.name: s for s in kept_trace.spans}
        assert sorted(by) == sorted(names)
        top, middle, call = (by[n] for n in names)
        assert top.parent is None and middle.parent.span_id == top.context.span_id
        assert call.parent.span_id == middle.context.span_id and call.kind.name == "CLIENT"
        assert len({s.context.trace_id for s in kept_trace.spans}) == 1
    assert tracing.sampler._calls == {} and len(tracing.sampler._pending) == 0
    tracing.stop()
