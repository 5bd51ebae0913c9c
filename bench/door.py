"""``tradeguard bench door --json``: CPU per *refused* ``POST /orders``, in process.

A node app (``tradeguard.bootstrap.build_node``, SQLite stores in a temporary directory, collectors
off) gets a flow rule that refuses ``POST /orders`` past 1 request/s; ``--requests`` orders (default
3,000) are then handed to the node app as ASGI calls (``--client asgi``, default: no sockets, no
client library — what is measured is the node's own ASGI stack, guard, problem document, block log
and tracing; ``--client httpx`` goes through httpx's ASGITransport, whose own cost is then included).
For each mode — tracing **on** (default sampling, tail sampler, span store) and **off**
(``build_node(tracing=False)``) — the CPU time of the calling process (``time.process_time``, which
includes the tracing export thread) is divided by the number of 429 answers. ``--profile`` prints
the top cProfile entries of the tracing-on run to stderr.

Last line JSON: ``cpu_ms_per_refusal_on`` / ``_off``, ``refused_*``, ``wall_ms_per_refusal_*``,
the tracing store's counts for the on run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ADDRESS = {"country": "CN", "province": "Zhejiang", "city": "Hangzhou", "district": "Xihu",
           "street": "1 Lake Road", "recipient": "bench", "phone": "13800000000"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=3000, help="orders posted per mode (default 3000)")
    parser.add_argument("--profile", action="store_true", help="cProfile the tracing-on run (stderr)")
    parser.add_argument("--modes", default="on,off", help="comma-separated: on, off (default both)")
    parser.add_argument("--client", choices=("asgi", "httpx"), default="asgi",
                        help="asgi: call the node app directly (only the node's own work is timed; default); "
                        "httpx: through httpx's ASGITransport (includes the client's cost)")


def _progress(msg: str) -> None:
    print(f"[bench door] {msg}", file=sys.stderr, flush=True)


def _bodies(n: int, tag: str) -> list[bytes]:
    return [json.dumps({"buyer_id": f"b{i % 997}", "tx_type": "fixed_price", "channel": "app",
                        "lines": [{"sku": "ELEC-003", "qty": 1}], "address": ADDRESS,
                        "idempotency_key": f"{tag}-{i}"}, separators=(",", ":")).encode()
            for i in range(n)]


class _AsgiClient:
    """The least a server does around an app: a scope, one receive, collect the status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def post(self, path: str, content: bytes, headers: dict[str, str]) -> Any:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
                 "headers": [(b"host", b"node"), (b"content-length", str(len(content)).encode()),
                             *((k.encode(), v.encode()) for k, v in headers.items())]}
        sent = False
        answer = _Answer()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": content, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status_code = message["status"]

        await self.app(scope, receive, send)
        return answer

    async def __aenter__(self) -> _AsgiClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None


class _Answer:
    status_code = 0


def _client(app: Any, kind: str) -> Any:
    if kind == "asgi":
        return _AsgiClient(app)
    import httpx

    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://node")


async def _post_all(app: Any, mode: str, n: int, profile: bool, kind: str = "asgi") -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    async with _client(app, kind) as client:
        for body in _bodies(20, f"warm-{mode}"):  # warm-up: imports, first trace, SQLite pages
            await client.post("/orders", content=body, headers=headers)
        bodies = _bodies(n, mode)
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        statuses: dict[int, int] = {}
        c0, w0 = time.process_time(), time.perf_counter()
        for body in bodies:
            status = (await client.post("/orders", content=body, headers=headers)).status_code
            statuses[status] = statuses.get(status, 0) + 1
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    if prof is not None:
        import io
        import pstats

        prof.disable()
        for order in ("cumulative", "tottime"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(60 if order == "cumulative" else 35)
            print(buf.getvalue(), file=sys.stderr)
    refused = statuses.get(429, 0)
    return {"refused": refused, "statuses": statuses,
            "cpu_ms_per_refusal": round(cpu * 1000 / refused, 3) if refused else None,
            "wall_ms_per_refusal": round(wall * 1000 / refused, 3) if refused else None}


def _no_trio() -> None:
    """httpx's ASGITransport asks, per request, whether trio runs by importing ``sniffio``; it is
    not installed here, so each request paid a failed import (a file-system search, ~20-40 % of the
    measured time) that a served node never pays. A ``None`` in ``sys.modules`` fails it at once."""
    for name in ("sniffio", "trio"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = None  # type: ignore[assignment]


def measure(mode: str, n: int, root: Path, profile: bool = False, kind: str = "asgi") -> dict[str, Any]:
    import guardians
    from tradeguard.bootstrap import build_node, seed_catalog
    from tradeguard.settings import load_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = load_settings(var_dir=root / mode, instance=f"door-{mode}")
    seed_catalog(settings)
    node = build_node(settings, port=18600, collectors=False, tracing=mode == "on")
    node.ctx.engine.apply(guardians.parse_document(
        {"flow": [{"name": "door-block", "resource": "POST /orders", "threshold": 1}]}), version=1)
    out: dict[str, Any] = {}
    node.start()  # the tracing exporter thread writes kept traces, as in a served node
    try:
        out = asyncio.run(_post_all(node.app, mode, n, profile, kind))
        if mode == "on":
            client = TestClient(node.app, client=("127.0.0.1", 40000))
            health = client.get("/ops/health").json()
            out["tracing"] = (health.get("stores") or {}).get("tracing")
    finally:
        node.stop()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    for key in list(os.environ):
        if key.startswith("TRADEGUARD_") and key != "TRADEGUARD_REQUIRE_SERVICES":
            del os.environ[key]
    _no_trio()
    root = Path(tempfile.mkdtemp(prefix="tradeguard-bench-door-"))
    result: dict[str, Any] = {"requests": args.requests, "client": args.client}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in ("on", "off"):
            raise ValueError(f"--modes: unknown mode {mode!r}, expected on or off")
        r = measure(mode, args.requests, root, profile=args.profile and mode == "on", kind=args.client)
        _progress(f"tracing {mode}: {r['refused']} refused, {r['cpu_ms_per_refusal']} ms CPU each, "
                  f"statuses {r['statuses']}")
        for key, value in r.items():
            result[f"{key}_{mode}"] = value
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="bench.door")
    add_arguments(p)
    print(json.dumps(run(p.parse_args())))
