"""Degrade where users expect it: ``GET /orders/{order_id}`` answers a recent cached view when blocked.

``StaleOrders`` is an ASGI middleware outside the guard: a 200 answer of the route is kept (bounded
LRU, ``ttl_s``); when the route or ``order.get`` inside it is blocked (a 429/503 problem+json),
the cached view of the same order answers instead, 200 with ``X-Tradeguard-Stale: true`` and
``Age``. Without a cached view the problem goes through unchanged.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ORDER_PATH = re.compile(r"^/orders/([^/]+)$")
STALE_HEADER = "x-tradeguard-stale"


class StaleOrders:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_entries: int = 10_000,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.served = 0

    def _get(self, order_id: str) -> tuple[float, bytes] | None:
        with self._lock:
            hit = self._cache.get(order_id)
            if hit is None or self.clock() - hit[0] > self.ttl_s:
                return None
            return hit

    def _put(self, order_id: str, body: bytes) -> None:
        with self._lock:
            self._cache[order_id] = (self.clock(), body)
            self._cache.move_to_end(order_id)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        m = ORDER_PATH.match(scope.get("path", "")) if scope.get("type") == "http" else None
        if m is None or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        order_id = m.group(1)
        held: list[Message] = []
        status = 0

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status not in (200, 429, 503):
                    held.clear()
                    await send(message)
                    status = -1  # pass through
                    return
                held.append(message)
                return
            if status == -1:
                await send(message)
                return
            held.append(message)
            if not message.get("more_body", False):
                await self._finish(order_id, status, held, send)

        await self.app(scope, receive, capture)

    async def _finish(self, order_id: str, status: int, held: list[Message], send: Any) -> None:
        body = b"".join(m.get("body", b"") for m in held[1:])
        if status == 200:
            self._put(order_id, body)
        elif _blocked(body):
            hit = self._get(order_id)
            if hit is not None:
                self.served += 1
                age = max(0, int(self.clock() - hit[0]))
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(hit[1])).encode()),
                    (STALE_HEADER.encode(), b"true"),
                    (b"age", str(age).encode()),
                ]})
                await send({"type": "http.response.body", "body": hit[1]})
                return
        for message in held:
            await send(message)


def _blocked(body: bytes) -> bool:
    """A guardians problem+json (a blocked call), not some other 429/503."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and str(doc.get("type", "")).endswith("-blocked") and doc.get(
        "rule_type"
    ) in ("flow", "param", "system", "breaker")
