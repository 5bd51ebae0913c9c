"""A lean open-loop load generator for ``bench surge``, run in its own process.

``python -m bench.loadgen --url http://127.0.0.1:PORT --skus A,B,C`` reads commands, one JSON
object a line, on stdin and answers each with one JSON line on stdout:

- ``{"phases": [{"name": "surge", "rate": 600, "duration_s": 60}, ...]}`` runs the phases
  back to back on one schedule (so a recovery phase starts the instant a surge ends), waits
  until every order of them has finished (each request is bounded by ``--timeout-s``),
  writes the per-order records of each phase to ``RECORDS_DIR/NAME.json`` and answers
  ``{"phases": [{"name", "records", "sent", "behind_p50_ms", "behind_p99_ms", "behind_max_ms"}]}``;
- ``{"quit": true}`` ends the process.

Open loop: arrival times are a Poisson process drawn in advance from a seeded RNG; each
order starts at its scheduled time whether or not earlier ones have returned (there is
no cap on requests in flight below ``--max-connections``). Latency is measured from the
*scheduled* time, so a generator that falls behind cannot hide the node's slowness, and
how far behind it was when each request went out is recorded (``behind_ms``).

An order is ``POST /orders`` (one unit of one SKU) then, if that was 2xx,
``POST /orders/{id}/pay``; it succeeds when the order is placed (2xx) and paid (200; a 202
means the charge was queued for later, outcome ``queued``). A record is
``[sched_s, behind_ms, outcome, latency_ms, place_status, pay_status, placed_ms]`` (``placed_ms``: when
the place answer came, from the scheduled time; null if it never did) where outcome is
``ok``, ``queued``, ``rejected`` (429, or 503 with Retry-After: a guardian's fast refusal), ``timeout``,
``refused`` (another 4xx, e.g. out of stock or payment declined) or ``error`` (5xx,
connection failure). The HTTP/1.1 client is a few lines over asyncio streams with
keep-alive connections — httpx costs several times more CPU per request, and this
process shares a two-core machine with the node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.stats import percentile

OK, REJECTED, TIMEOUT, REFUSED, ERROR, QUEUED = "ok", "rejected", "timeout", "refused", "error", "queued"
# an order's JSON body: buyer number, SKU, street number, buyer number (recipient), seed, phase, sequence
_BODY = (
    b'{"buyer_id":"surge-%05d","tx_type":"fixed_price","channel":"app","lines":[{"sku":"%s","qty":1}],'
    b'"address":{"country":"CN","province":"Zhejiang","city":"Hangzhou","district":"Xihu",'
    b'"street":"%d Market Street","recipient":"surge-%05d","phone":"13800000000"},'
    b'"idempotency_key":"surge-%d-%s-%d"}'
)


class _Stale(Exception):
    """A kept-alive connection the server had already closed (retry on a fresh one)."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one host; a new one is opened whenever none is idle."""

    def __init__(
        self, host: str, port: int, *, max_connections: int, timeout_s: float, sources: int = 0
    ) -> None:
        """``sources``: spread connections over this many loopback source addresses (127.0.0.2 and
        up), one per shopper group, so a node sees several client IPs (0: the system's choice)."""
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.sources: list[str | None] = [f"127.0.0.{2 + i}" for i in range(sources)] or [None]
        self._idle_by: dict[str | None, list[_Conn]] = {s: [] for s in self.sources}
        self._slots = asyncio.Semaphore(max_connections)
        self.opened = 0
        self._host_header = f"{host}:{port}".encode()

    async def request(
        self, method: str, path: str, body: bytes | None = None, source: str | None = None
    ) -> tuple[int, bool, bytes]:
        """(status, has Retry-After, body), from source address ``source``. Raises TimeoutError or
        OSError."""
        idle = self._idle_by.setdefault(source, [])
        async with self._slots:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    reused = bool(idle)
                    conn = idle.pop() if reused else await self._open(source)
                    try:
                        status, retry_after, data, keep = await self._exchange(conn, method, path, body)
                    except _Stale:
                        conn.close()
                        continue
                    except BaseException:
                        conn.close()  # a half-read answer cannot be reused
                        raise
                    if keep:
                        idle.append(conn)
                    else:
                        conn.close()
                    return status, retry_after, data

    async def _open(self, source: str | None = None) -> _Conn:
        local = (source, 0) if source is not None else None
        reader, writer = await asyncio.open_connection(self.host, self.port, local_addr=local)
        self.opened += 1
        return _Conn(reader, writer)

    async def _exchange(
        self, conn: _Conn, method: str, path: str, body: bytes | None
    ) -> tuple[int, bool, bytes, bool]:
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), path.encode(), self._host_header)
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        else:
            head += b"Content-Length: 0\r\n"
        conn.writer.write(head + b"\r\n" + (body or b""))
        try:
            raw = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale() from exc
            raise ConnectionError("connection closed mid-answer") from exc
        except ConnectionResetError as exc:
            raise _Stale() from exc
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, keep, retry_after = 0, False, True, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and "close" in value.lower():
                keep = False
            elif name == "retry-after":
                retry_after = True
        if chunked:
            data = b""
            while True:
                size = int((await conn.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await conn.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        else:
            data = await conn.reader.readexactly(length) if length else b""
        return status, retry_after, data, keep

    def close(self) -> None:
        for idle in self._idle_by.values():
            for conn in idle:
                conn.close()
            idle.clear()


def classify(status: int, retry_after: bool) -> str:
    if 200 <= status < 300:
        return OK
    if status == 429 or (status == 503 and retry_after):
        return REJECTED
    if 400 <= status < 500:
        return REFUSED
    return ERROR


@dataclass
class Generator:
    pool: HttpPool
    skus: list[str]
    seed: int
    records_dir: Path
    buyers: int = 20000
    # more nodes: source address i is served by pools[i % len(pools)] (an L4 balancer by client
    # address); None: every source goes to ``pool``
    pools: list[HttpPool] | None = None
    _seq: int = 0
    _rng: random.Random = field(init=False)
    _pool_of: dict[str | None, HttpPool] = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed + 1)
        pools = self.pools or [self.pool]
        self._pool_of = {src: pools[i % len(pools)] for i, src in enumerate(self.pool.sources)}

    @property
    def opened(self) -> int:
        return sum(p.opened for p in (self.pools or [self.pool]))

    def _body(self, tag: str) -> tuple[bytes, str | None]:
        """An order's body and the source address of its shopper (a buyer always uses the same one)."""
        self._seq += 1
        rng = self._rng
        n = rng.randrange(self.buyers)
        sources = self.pool.sources
        source = sources[n % len(sources)]
        # the JSON of a fixed shape, filled in by %-formatting: json.dumps of the whole dict per order
        # was a fifth of the generator's CPU at 1,000 orders/s (values are plain ASCII, no escaping)
        body = _BODY % (n, rng.choice(self.skus).encode(), rng.randrange(1, 999), n,
                        self.seed, tag.encode(), self._seq)
        return body, source

    async def _order(
        self, out: list[list[Any]], sched: float, due: float, order: tuple[bytes, str | None]
    ) -> None:
        body, source = order
        pool = self._pool_of.get(source, self.pool)
        loop = asyncio.get_running_loop()
        behind_ms = max(0.0, (loop.time() - due) * 1000.0)
        place = pay = 0
        placed_ms = None
        try:
            place, ra, data = await pool.request("POST", "/orders", body, source)
            placed_ms = round((loop.time() - due) * 1000.0, 2)
            outcome = classify(place, ra)
            if outcome == OK:
                order_id = json.loads(data)["id"]
                pay, ra, _ = await pool.request("POST", f"/orders/{order_id}/pay", source=source)
                outcome = classify(pay, ra)
                if outcome == OK and pay != 200:
                    outcome = QUEUED  # 202: the charge was degraded and queued, not paid yet
        except TimeoutError:
            outcome = TIMEOUT
        except (OSError, ValueError, KeyError):
            outcome = ERROR
        latency_ms = (loop.time() - due) * 1000.0
        out.append([round(sched, 4), round(behind_ms, 2), outcome, round(latency_ms, 2), place, pay,
                    placed_ms])

    async def run_phases(self, phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        rng = random.Random(f"{self.seed}-{'-'.join(str(p['name']) for p in phases)}")
        start = loop.time() + 0.05
        tasks: set[asyncio.Task[None]] = set()
        per_phase: list[list[list[Any]]] = []
        opened: list[int] = []
        offset = 0.0
        for phase in phases:
            opened.append(self.opened)
            rate, duration = float(phase["rate"]), float(phase["duration_s"])
            out: list[list[Any]] = []
            per_phase.append(out)
            t = offset
            end = offset + duration
            while True:
                t += rng.expovariate(rate)
                if t >= end:
                    break
                due = start + t
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._order(out, t - offset, due, self._body(str(phase["name"]))))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            offset = end
            # the phase boundary is kept exactly: the next phase starts at `end` whatever happened
            delay = start + end - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        opened.append(self.opened)
        answers = []
        for i, (phase, out) in enumerate(zip(phases, per_phase, strict=True)):
            out.sort(key=lambda r: r[0])
            path = self.records_dir / f"{phase['name']}.json"
            path.write_text(json.dumps({"phase": phase, "records": out}))
            behind = [r[1] for r in out]
            answers.append(
                {
                    "name": phase["name"],
                    "records": str(path),
                    "sent": len(out),
                    "behind_p50_ms": round(percentile(behind, 50) or 0.0, 2),
                    "behind_p99_ms": round(percentile(behind, 99) or 0.0, 2),
                    "behind_max_ms": round(max(behind, default=0.0), 2),
                    # new connections while the phase's orders were sent (the last one: until all ended)
                    "connections_opened": opened[i + 1] - opened[i],
                }
            )
        return answers


async def serve(args: argparse.Namespace) -> None:
    pools = []
    for u in [u for u in args.url.split(",") if u]:
        url = urlsplit(u)
        pools.append(HttpPool(
            url.hostname or "127.0.0.1",
            url.port or 80,
            max_connections=args.max_connections,
            timeout_s=args.timeout_s,
            sources=args.sources,
        ))
    pool = pools[0]
    records_dir = Path(args.records_dir)
    records_dir.mkdir(parents=True, exist_ok=True)
    gen = Generator(pool, [s for s in args.skus.split(",") if s], args.seed, records_dir, buyers=args.buyers,
                    pools=pools)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        if command.get("quit"):
            break
        started = time.perf_counter()
        phases = await gen.run_phases(command["phases"])
        print(
            json.dumps(
                {
                    "phases": phases,
                    "elapsed_s": round(time.perf_counter() - started, 2),
                    "connections_opened": gen.opened,
                }
            ),
            flush=True,
        )
    for p in pools:
        p.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True,
                   help="the node's URL, or several comma-separated (source i → node i mod n)")
    p.add_argument("--skus", required=True, help="comma-separated SKUs to order (one unit each)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout-s", type=float, default=2.0, help="per-request timeout (a shopper gives up)")
    p.add_argument("--max-connections", type=int, default=4000)
    p.add_argument("--records-dir", required=True)
    p.add_argument("--sources", type=int, default=16,
                   help="loopback source addresses 127.0.0.2 and up, one per shopper group (16; 0: one)")
    p.add_argument("--buyers", type=int, default=20000, help="distinct buyers (20000)")
    args = p.parse_args(argv)
    # the records of a long surge are tens of thousands of small lists: keep full collections
    # (which walk all of them) from pausing the schedule
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
