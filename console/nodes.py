"""Talking to running nodes over their ops HTTP API (the console never imports the composition root).

Chaos settings live in the control DB and every node polls them; any live node's
``PUT /ops/chaos/payment`` changes them for all, so the console asks the first live
node that answers, found through the heartbeats.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from console.services.ports import FleetPort
from domain.ports import Clock
from guardians.fleet import LIVE

log = logging.getLogger(__name__)

CHAOS_PATH = "/ops/chaos/payment"


class NoLiveNode(RuntimeError):
    pass


def base_url(address: str) -> str:
    address = address.strip().rstrip("/")
    return address if address.startswith(("http://", "https://")) else f"http://{address}"


class NodeChaos:
    """Reads and changes the payment gateway's chaos settings through a live node."""

    def __init__(
        self, fleet: FleetPort, *, clock: Clock, timeout_s: float = 2.0, token: str | None = None
    ) -> None:
        self.fleet = fleet
        self.clock = clock
        self.timeout_s = timeout_s
        # the nodes' control token (TRADEGUARD_OPS_TOKEN), handed in by the composition root
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _addresses(self) -> list[str]:
        nodes = self.fleet.nodes(self.clock.now())
        live = [n for n in nodes if n.state == LIVE and n.address]
        if not live:
            raise NoLiveNode(
                "no live node to reach: start `tradeguard node` (chaos is applied through a node)"
            )
        return [base_url(n.address) for n in live]

    def _call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        last: Exception | None = None
        for url in self._addresses():
            try:
                with httpx.Client(timeout=self.timeout_s) as client:
                    resp = client.request(method, url + CHAOS_PATH, json=body, headers=self._headers)
                if resp.status_code >= 400:
                    detail = (
                        resp.json().get("detail", resp.text)
                        if resp.headers.get("content-type", "").endswith("json")
                        else resp.text
                    )
                    raise ValueError(f"node {url} refused: {detail}")
                data = resp.json()
                return dict(data.get("settings", data)) if isinstance(data, dict) else {}
            except ValueError:
                raise
            except Exception as exc:  # try the next live node
                log.warning("chaos call to %s failed: %s", url, exc)
                last = exc
        raise NoLiveNode(f"no live node answered: {last}")

    def get(self) -> dict[str, Any]:
        return self._call("GET")

    def set(self, *, latency_ms: int, error_rate: float, outage: bool, by: str) -> dict[str, Any]:
        return self._call(
            "PUT", {"latency_ms": latency_ms, "error_rate": error_rate, "outage": outage, "by": by}
        )
