"""The node's own ``/ops/*`` routes, apart from the wiring that builds what they show.

``ops_router(...)`` is given ready parts (a health function, the guardians' stats and rules
views, the chaos store and poller) and never opens a store itself: ``tradeguard.bootstrap``
builds the parts and calls it. The routes are never guarded (the node's route resolver skips
``/ops/``). Errors are RFC 9457 problem+json through ``domain.api.problems.problem``, the same
builder as the trading API's.

- ``GET /ops/health``: 200, or 503 when the trading DB is down; open to anyone;
- ``GET /ops/stats`` and ``GET /ops/rules``: only when guardians are wired; they reveal every
  threshold, so they need the bearer token;
- ``GET|PUT /ops/chaos/payment``: what the console's Chaos page calls; 503 when the control DB
  could not be opened, 422 for a setting out of range; ``PUT`` needs the bearer token.

The token check is ``auth`` (``domain.api.auth.BearerAuth`` over ``TRADEGUARD_OPS_TOKEN``, built by
the composition root): 401 problem+json with ``WWW-Authenticate: Bearer`` for a missing or wrong
token, 403 when the node has no token configured (left out, the protected routes answer 403).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from domain.api.auth import AUTH_RESPONSES, BearerAuth
from domain.api.problems import problem, problem_responses
from tradeguard.chaos import ChaosError, ChaosPoller, ChaosStore

View = Callable[[], dict[str, Any]]


class ChaosUpdate(BaseModel):
    latency_ms: int | None = None
    error_rate: float | None = None
    outage: bool | None = None
    reset: bool = False
    by: str = "api"


# /ops/health answers its health document both ways: 200 when the node serves, 503 when it is down
_HEALTH_DOWN = {
    503: {
        "description": "the node is down (its trading DB is unreachable): the same health document",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_NO_CHAOS = problem_responses(
    503, description="chaos control unavailable: the control DB could not be opened"
)


def ops_router(
    *,
    health: View,
    stats: View | None = None,
    rules: View | None = None,
    chaos_store: ChaosStore | None = None,
    chaos_poller: ChaosPoller | None = None,
    auth: BearerAuth | None = None,
) -> APIRouter:
    """The ``/ops/*`` routes; ``stats``/``rules`` are left out when ``None`` (no guardians)."""
    router = APIRouter(tags=["ops"])
    protected = [Depends(auth if auth is not None else BearerAuth(None))]

    @router.get(
        "/ops/health",
        response_model=None,
        responses=_HEALTH_DOWN,
    )
    def ops_health() -> JSONResponse:
        body = health()
        return JSONResponse(body, status_code=503 if body["status"] == "down" else 200)

    if stats is not None:

        @router.get("/ops/stats", dependencies=protected, responses=AUTH_RESPONSES)
        def ops_stats() -> dict[str, Any]:
            return stats()

    if rules is not None:

        @router.get("/ops/rules", dependencies=protected, responses=AUTH_RESPONSES)
        def ops_rules() -> dict[str, Any]:
            return rules()

    def no_chaos() -> JSONResponse:
        return problem(
            503,
            "chaos_unavailable",
            "the control DB could not be opened; see /ops/health",
            title="Chaos control unavailable",
        )

    @router.get("/ops/chaos/payment", response_model=None, responses=_NO_CHAOS)
    def get_chaos() -> dict[str, Any] | JSONResponse:
        if chaos_store is None:
            return no_chaos()
        settings, version = chaos_store.read("payment")
        applied = chaos_poller.status() if chaos_poller else None
        return {"target": "payment", **settings.as_dict(), "version": version, "applied": applied}

    @router.put("/ops/chaos/payment", response_model=None, responses={**_NO_CHAOS, **AUTH_RESPONSES},
                dependencies=protected)
    def put_chaos(update: ChaosUpdate) -> dict[str, Any] | JSONResponse:
        if chaos_store is None:
            return no_chaos()
        try:
            if update.reset:
                settings = chaos_store.reset("payment", by=update.by)
            else:
                settings = chaos_store.set(
                    "payment",
                    latency_ms=update.latency_ms,
                    error_rate=update.error_rate,
                    outage=update.outage,
                    by=update.by,
                )
        except ChaosError as exc:
            field_name = str(exc).split(" ", 1)[0]
            return problem(422, "invalid_chaos_setting", str(exc), title="Invalid chaos setting",
                           field=field_name)
        if chaos_poller is not None:
            chaos_poller.poll()  # this node at once; the others within chaos_poll_s
        return {"target": "payment", **settings.as_dict()}

    return router
