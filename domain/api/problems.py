"""RFC 9457 problem+json responses for domain errors, validation errors and HTTP errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.problems import PROBLEM_JSON, problem_body
from domain import errors
from domain.ports import ORDER_PAY, ORDER_PLACE, REFUND_REQUEST, RefusalRecorder

log = logging.getLogger(__name__)


# What each problem status means, for the OpenAPI document (``responses=`` of routes and routers).
PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "malformed request: the body could not be decoded",
    402: "payment failed",
    404: "not found",
    409: "conflict: stock, limit, state or idempotency",
    422: "invalid request: a field is missing or out of range (or the JSON does not parse)",
    429: "too many requests: blocked by a flow-control rule (Retry-After)",
    500: "internal error",
    503: "unavailable: a store is down, or a breaker is open (Retry-After)",
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def problem_responses(*codes: int, description: str | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries answering problem+json for ``codes`` (FastAPI ``responses=``)."""
    return {
        code: {
            "description": description or PROBLEM_DESCRIPTIONS.get(code, "problem"),
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for code in codes
    }


def problem(status: int, kind: str, detail: str, *, title: str | None = None, instance: str | None = None,
            headers: dict[str, str] | None = None, members: dict[str, Any] | None = None,
            **more: Any) -> JSONResponse:
    """A problem+json response (``common.problems.problem_body``)."""
    body = problem_body(status, kind, detail, title=title, instance=instance,
                        members={**(members or {}), **more})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_for(exc: errors.DomainError) -> int:
    if isinstance(exc, errors.UnknownSku):
        return 422  # the request body names a SKU the catalog does not have
    return errors.KIND_STATUS.get(exc.kind, 400)


def loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    status = status_for(exc)
    headers = {"Retry-After": "1"} if status == 503 else None
    kind = "unknown_sku" if isinstance(exc, errors.UnknownSku) else exc.kind
    members = {"field": exc.field, "rule": exc.rule, **exc.extra}
    return problem(status, kind, exc.message, title=exc.title, instance=request.url.path, headers=headers,
                   members=members)


# Business refusals: the statuses of a request the shop refused (stock, limit, state, a bad SKU, …);
# not 404 (nothing to refuse), 402 (the gateway's answer: the ``payments`` figures) or 503 (a store).
REFUSAL_STATUSES = frozenset({409, 422})
# The core's resource name of a trading route (its capability); other routes keep "METHOD /template".
ROUTE_RESOURCES: dict[tuple[str, str], str] = {
    ("POST", "/orders"): ORDER_PLACE,
    ("POST", "/orders/{order_id}/pay"): ORDER_PAY,
    ("POST", "/orders/{order_id}/refunds"): REFUND_REQUEST,
}


def refused_resource(request: Request) -> str:
    """The resource a refusal is counted on: the route's capability (``order.place`` for POST /orders)."""
    route = request.scope.get("route")
    template = getattr(route, "path", None) or request.url.path
    return ROUTE_RESOURCES.get((request.method, template)) or f"{request.method} {template}"


def recording_domain_error_handler(
    refusals: RefusalRecorder,
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """``domain_error_handler`` that also reports each business refusal (409/422) to ``refusals``.

    The composition root installs it (``create_app(exception_handlers={DomainError: …})``) when the
    node records refusals; a failing recorder never changes the answer."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        response = await domain_error_handler(request, exc)
        if response.status_code in REFUSAL_STATUSES and isinstance(exc, errors.DomainError):
            kind = "unknown_sku" if isinstance(exc, errors.UnknownSku) else exc.kind
            try:
                refusals.record(refused_resource(request), kind)
            except Exception:  # a metric hook must never fail a response
                log.warning("could not record a refusal on %s %s", request.method, request.url.path,
                            exc_info=True)
        return response

    return handler


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errs = [{"field": loc_to_field(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type")}
            for e in exc.errors()]
    first = errs[0] if errs else {"field": "body", "message": "invalid request"}
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errs[:5])
    rule = "qty.range" if first["field"].endswith(".qty") else "request.schema"
    return problem(422, "validation_error", detail, title="Request validation failed",
                   instance=request.url.path, field=first["field"], rule=rule, errors=errs)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code,
                                                                                  "http_error")
    return problem(exc.status_code, kind, str(exc.detail), instance=request.url.path,
                   headers=getattr(exc, "headers", None))


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    detail = f"internal error ({type(exc).__name__}); the request may be retried"
    return problem(500, "internal_error", detail,
                   instance=request.url.path)
