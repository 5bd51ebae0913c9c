"""The trading core's HTTP API (service access layer of a node).

``create_app(service)`` is given a ready ``TradingService``; it never creates
engines or clients. Route handlers are plain ``def`` (FastAPI runs them in its
threadpool) because the service is synchronous.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain import errors
from domain.api.dto import (
    CancelIn,
    OrderOut,
    PlaceOrderIn,
    ProductOut,
    RefundIn,
    RefundOut,
    ShopOut,
)
from domain.api.problems import (
    PROBLEM_JSON,
    domain_error_handler,
    http_error_handler,
    unhandled_error_handler,
    validation_error_handler,
)
from domain.commands import LineItem, PlaceOrder
from domain.services import TradingService

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": desc, "content": {PROBLEM_JSON: {}}}
    for code, desc in ((402, "payment failed"), (404, "not found"), (409, "conflict: stock, limit, state or "
                       "idempotency"), (422, "invalid request"), (503, "store unavailable"))
}


def create_app(
    service: TradingService,
    *,
    health: Callable[[], Mapping[str, Any]] | None = None,
    exception_handlers: Mapping[Any, Callable[..., Any]] | None = None,
    routers: Iterable[APIRouter] = (),
    title: str = "tradeguard trading core",
) -> FastAPI:
    app = FastAPI(title=title, version="1", responses=PROBLEM_RESPONSES)
    app.state.service = service
    app.add_exception_handler(errors.DomainError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    for exc_type, handler in (exception_handlers or {}).items():
        app.add_exception_handler(exc_type, handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
    app.include_router(trading_router(service))
    if health is not None:
        app.include_router(health_router(health))
    for router in routers:
        app.include_router(router)
    return app


def trading_router(service: TradingService) -> APIRouter:
    r = APIRouter()

    @r.post("/orders", status_code=201, response_model=OrderOut, tags=["orders"])
    def place_order(body: PlaceOrderIn, response: Response) -> Any:
        view = service.place_order(PlaceOrder(
            buyer_id=body.buyer_id, tx_type=body.tx_type, channel=body.channel,
            lines=[LineItem(li.sku, li.qty) for li in body.lines], address=body.address.model_dump(),
            idempotency_key=body.idempotency_key,
        ))
        response.headers["Location"] = f"/orders/{view.id}"
        if view.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return view

    @r.get("/orders/{order_id}", response_model=OrderOut, tags=["orders"])
    def get_order(order_id: str) -> Any:
        return service.get_order(order_id)

    @r.post("/orders/{order_id}/pay", response_model=OrderOut, tags=["orders"],
            responses={202: {"description": "payment queued: the charge was degraded (payment.charge "
                                            "blocked) and will be retried; the order stays pending_payment "
                                            "with its stock reserved", "model": OrderOut}})
    def pay_order(order_id: str, response: Response) -> Any:
        view = service.pay_order(order_id)
        if any(p.status == "queued" for p in view.payments):
            response.status_code = 202
            response.headers["Location"] = f"/orders/{view.id}"
        return view

    @r.post("/orders/{order_id}/cancel", response_model=OrderOut, tags=["orders"])
    def cancel_order(order_id: str, body: CancelIn | None = None) -> Any:
        return service.cancel_order(order_id, reason=body.reason if body else "buyer")

    @r.post("/orders/{order_id}/refunds", status_code=201, response_model=RefundOut, tags=["refunds"])
    def request_refund(order_id: str, body: RefundIn, response: Response) -> Any:
        view = service.request_refund(order_id, [(li.sku, li.qty) for li in body.lines])
        response.headers["Location"] = f"/refunds/{view.id}"
        return view

    @r.get("/refunds/{refund_id}", response_model=RefundOut, tags=["refunds"])
    def get_refund(refund_id: str) -> Any:
        return service.get_refund(refund_id)

    @r.post("/refunds/{refund_id}/complete", response_model=RefundOut, tags=["refunds"])
    def complete_refund(refund_id: str) -> Any:
        return service.complete_refund(refund_id)

    @r.get("/shops", response_model=list[ShopOut], tags=["catalog"])
    def list_shops() -> Any:
        return service.list_shops()

    @r.get("/shops/{shop_id}/products", response_model=list[ProductOut], tags=["catalog"])
    def list_products(shop_id: str) -> Any:
        return service.list_products(shop_id)

    return r


def health_router(health: Callable[[], Mapping[str, Any]]) -> APIRouter:
    r = APIRouter()

    @r.get("/ops/health", tags=["ops"])
    def get_health() -> Any:
        body = dict(health())
        ok = body.get("status", "ok") == "ok"
        return JSONResponse(body, status_code=200 if ok else 503)

    return r
