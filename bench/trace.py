"""``tradeguard bench trace --json``: what tracing costs a node on ``POST /orders``.

Three nodes run side by side, each its own process (uvicorn, one worker, SQLite stores in its own
temporary directory, the demo catalog seeded, guardians on without rules, collectors off so
their background ticks do not add noise), configured alike but for tracing: **off**
(``build_node(tracing=False)``), at the **default** sampling (``TRADEGUARD_TRACE_SAMPLE`` 0.01,
tail sampling, embedded span store) and at **100 %** (every trace written to the span store).

Fairness on a shared machine: one node is driven at a time, in interleaved rounds whose mode order
rotates (off, default, full; default, full, off; …) so drift of the machine and the position in
a round fall on every mode alike; each slice starts with a warm-up that is not counted. Per
slice, a closed-loop load (``--concurrency`` keep-alive connections, each sending the next order
when the last one answered, ``bench.loadgen.HttpPool``) measures throughput and its latency,
then one connection alone (``--latency-duration``) measures the latency a request pays with no
queue in front of it. Only 201 answers are counted and timed.

Why both latencies: at concurrency 8 a single-worker node is saturated, so the p50 there is
mostly queueing (≈ 8 × the service time): 1 ms of it is ~1/8 ms of work per request, the
throughput target once more. The unloaded p50 is what tracing adds to one request.

Last line JSON: ``rps_*``, ``p50_ms_*``, ``p99_ms_*`` (under load) and ``p50_ms_*_unloaded``,
``p99_ms_*_unloaded`` for each mode, ``keep_default`` (default ÷ off throughput, target ≥ 0.90)
with ``keep_default_rounds`` (each round's ratio), ``p50_added_ms_default`` (target ≤ 1 ms) and
``p50_added_ms_default_unloaded``, ``targets_met`` (both targets on the figures under load),
``cpu_ms_per_order_*`` (the node process's CPU time per order in the loaded slices: the figure
least moved by other processes on a shared machine, whose time is not counted), ``non_201`` per
mode, and the span store's trace counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("off", "default", "full")
SAMPLE = {"default": None, "full": 1.0}
TARGET_KEEP = 0.90
TARGET_P50_ADDED_MS = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per mode per round")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds before each slice")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--latency-duration", type=float, default=2.0,
                        help="seconds per mode per round, one request at a time (0: skip)")


def _progress(msg: str) -> None:
    print(f"[bench trace] {msg}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ============================================================================ the node process
def serve(mode: str, port: int, var_dir: str) -> None:
    """Run one node (``python -m bench.trace --serve MODE PORT VAR_DIR``) until killed."""
    import logging

    import uvicorn

    from tradeguard.bootstrap import build_node, seed_catalog
    from tradeguard.settings import load_settings

    logging.basicConfig(level=logging.WARNING)
    overrides: dict[str, Any] = {"var_dir": Path(var_dir), "instance": f"bench-{mode}"}
    if SAMPLE.get(mode) is not None:
        overrides["trace_sample"] = SAMPLE[mode]
    settings = load_settings(**overrides)
    seed_catalog(settings)
    node = build_node(settings, port=port, collectors=False, tracing=mode != "off")
    node.start()
    try:
        uvicorn.run(node.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        node.stop()


# ============================================================================ the load
def _bodies(skus: list[str], tag: str):
    n = 0
    while True:
        n += 1
        sku = skus[n % len(skus)]
        yield json.dumps({
            "buyer_id": f"bench-{n % 997}", "tx_type": "fixed_price", "channel": "app",
            "lines": [{"sku": sku, "qty": 1}],
            "address": {"country": "CN", "province": "Zhejiang", "city": "Hangzhou", "district": "Xihu",
                        "street": "1 Lake Road", "recipient": "bench", "phone": "13800000000"},
            "idempotency_key": f"{tag}-{n}",
        }, separators=(",", ":")).encode()


async def _drive(port: int, seconds: float, concurrency: int, bodies) -> tuple[list[float], int]:
    from bench.loadgen import HttpPool

    pool = HttpPool("127.0.0.1", port, max_connections=concurrency, timeout_s=10.0)
    latencies: list[float] = []
    other = [0]
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            body = next(bodies)
            t0 = time.perf_counter()
            try:
                status, _, _ = await pool.request("POST", "/orders", body)
            except (TimeoutError, OSError):
                other[0] += 1
                continue
            if status == 201:
                latencies.append((time.perf_counter() - t0) * 1000.0)
            else:
                other[0] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    pool.close()
    return latencies, other[0]


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node on port {port} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ops/health", timeout=1.0).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"node on port {port} did not answer within {timeout_s} s")


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used so far; None where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _pct(values: list[float], pct: float) -> float | None:
    from common.stats import percentile

    v = percentile(values, pct)
    return round(v, 3) if v is not None else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.surge import regular_skus

    skus, _ = regular_skus()
    root = Path(tempfile.mkdtemp(prefix="tradeguard-bench-trace-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    results: dict[str, dict[str, Any]] = {m: {"lat": [], "lat1": [], "other": 0, "seconds": 0.0, "cpu": 0.0}
                                          for m in MODES}
    rounds: list[dict[str, float]] = []
    try:
        for mode in MODES:
            port = _free_port()
            proc = subprocess.Popen([sys.executable, "-m", "bench.trace", "--serve", mode, str(port),
                                     str(root / mode)], env=env, stdout=subprocess.DEVNULL)
            procs[mode] = (proc, port)
        for proc, port in procs.values():
            _wait_ready(port, proc)
        _progress(f"3 nodes up; {args.rounds} round(s) × {args.duration:g} s per mode at concurrency "
                  f"{args.concurrency}, then {args.latency_duration:g} s one request at a time")
        for r in range(args.rounds):
            order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]  # rotated: no mode always first
            this: dict[str, float] = {}
            for mode in order:
                port = procs[mode][1]
                bodies = _bodies(skus, f"{mode}-{r}")
                asyncio.run(_drive(port, args.warmup, args.concurrency, bodies))
                cpu0 = _cpu_s(procs[mode][0].pid)
                lat, other = asyncio.run(_drive(port, args.duration, args.concurrency, bodies))
                cpu1 = _cpu_s(procs[mode][0].pid)
                res = results[mode]
                if cpu0 is None or cpu1 is None or res["cpu"] is None:
                    res["cpu"] = None
                else:
                    res["cpu"] += cpu1 - cpu0
                res["lat"] += lat
                res["other"] += other
                res["seconds"] += args.duration
                this[mode] = len(lat) / args.duration
                line = (f"round {r + 1} {mode:<7}: {this[mode]:7.1f} rps, p50 {_pct(lat, 50)} ms, "
                        f"p99 {_pct(lat, 99)} ms, non-201 {other}")
                if args.latency_duration > 0:
                    lat1, other1 = asyncio.run(_drive(port, args.latency_duration, 1, bodies))
                    res["lat1"] += lat1
                    res["other"] += other1
                    line += f"; alone p50 {_pct(lat1, 50)} ms"
                _progress(line)
            rounds.append(this)
        health = {}
        import httpx

        for mode in ("default", "full"):
            try:
                body = httpx.get(f"http://127.0.0.1:{procs[mode][1]}/ops/health", timeout=5).json()
                tr = body["stores"]["tracing"]
                health[mode] = {"decisions": tr.get("decisions"), "dropped": tr.get("dropped"),
                                "stored": (tr.get("store") or {}).get("traces")}
            except Exception as exc:
                health[mode] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    out: dict[str, Any] = {}
    for mode in MODES:
        res = results[mode]
        out[f"rps_{mode}"] = round(len(res["lat"]) / res["seconds"], 1) if res["seconds"] else None
        out[f"p50_ms_{mode}"] = _pct(res["lat"], 50)
        out[f"p99_ms_{mode}"] = _pct(res["lat"], 99)
        out[f"p50_ms_{mode}_unloaded"] = _pct(res["lat1"], 50)
        out[f"p99_ms_{mode}_unloaded"] = _pct(res["lat1"], 99)
        out[f"cpu_ms_per_order_{mode}"] = (round(res["cpu"] / len(res["lat"]) * 1000.0, 3)
                                           if res["cpu"] is not None and res["lat"] else None)
        out[f"non_201_{mode}"] = res["other"]
    keep = out["rps_default"] / out["rps_off"] if out["rps_off"] else None
    added = (out["p50_ms_default"] - out["p50_ms_off"]
             if out["p50_ms_default"] is not None and out["p50_ms_off"] is not None else None)
    out["keep_default"] = round(keep, 3) if keep is not None else None
    out["keep_default_rounds"] = [round(r["default"] / r["off"], 3) if r.get("off") else None for r in rounds]
    out["keep_full"] = round(out["rps_full"] / out["rps_off"], 3) if out["rps_off"] else None
    out["p50_added_ms_default"] = round(added, 3) if added is not None else None
    unloaded = (out["p50_ms_default_unloaded"] - out["p50_ms_off_unloaded"]
                if out["p50_ms_default_unloaded"] is not None and out["p50_ms_off_unloaded"] is not None
                else None)
    out["p50_added_ms_default_unloaded"] = round(unloaded, 3) if unloaded is not None else None
    out["targets"] = {"keep_default": TARGET_KEEP, "p50_added_ms_default": TARGET_P50_ADDED_MS}
    out["targets_met"] = bool(keep is not None and keep >= TARGET_KEEP and added is not None
                              and added <= TARGET_P50_ADDED_MS)
    out["tracing"] = health
    out["concurrency"] = args.concurrency
    out["rounds"] = args.rounds
    out["seconds_per_mode"] = args.duration * args.rounds
    out["unloaded_seconds_per_mode"] = args.latency_duration * args.rounds
    return out


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        print("usage: python -m bench.trace --serve MODE PORT VAR_DIR (use `tradeguard bench trace`)",
              file=sys.stderr)
        sys.exit(2)
