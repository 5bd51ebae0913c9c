"""The trading core's HTTP API (service access layer of a node).

``create_app(service)`` is given a ready ``TradingService``; it never creates
engines or clients. Route handlers are plain ``def`` (FastAPI runs them in its
threadpool) because the service is synchronous — except the two hot ones, ``POST /orders``
and ``POST /orders/{id}/pay``: they are ``async`` and hand the service call to the threadpool
themselves, so FastAPI checks and serializes their answer on the event loop instead of in a
second threadpool hop per request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain import errors
from domain.api.auth import AUTH_RESPONSES, AuthProblem, BearerAuth, auth_error_handler
from domain.api.conformance import AllowMiddleware, document_request_errors
from domain.api.dto import (
    AuctionIn,
    AuctionOut,
    BidIn,
    BidOut,
    CancelIn,
    DeliverIn,
    OrderOut,
    PayIn,
    PlaceOrderIn,
    ProductOut,
    RefundIn,
    RefundOut,
    RejectIn,
    ShipIn,
    ShopOut,
)
from domain.api.problems import (
    domain_error_handler,
    http_error_handler,
    problem_responses,
    unhandled_error_handler,
    validation_error_handler,
)
from domain.commands import LineItem, PlaceOrder
from domain.services import TradingService

# Any route may fail unexpectedly; the trading routes answer the domain errors (errors.KIND_STATUS).
# 400/422 of a request that cannot be read are added per route (conformance.document_request_errors).
APP_RESPONSES = problem_responses(500)
TRADING_RESPONSES = problem_responses(402, 404, 409, 422, 503)


# FastAPI's native OpenTelemetry hooks (its ``telemetry=`` argument, where the installed FastAPI has
# it) are off: a node's route spans are the composition root's (``tradeguard.tracing``). On, they
# look up the global tracer, meter and logger providers (environment lookups) on every request, and
# would add a second server span wherever a global provider is configured.
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


def create_app(
    service: TradingService,
    *,
    exception_handlers: Mapping[Any, Callable[..., Any]] | None = None,
    routers: Iterable[APIRouter] = (),
    trading_responses: Mapping[int | str, dict[str, Any]] | None = None,
    title: str = "tradeguard trading core",
    merchant_auth: BearerAuth | None = None,
) -> FastAPI:
    """``trading_responses``: more statuses the trading routes answer, e.g. a guard's 429 and 503
    that the composition root plugs in (the OpenAPI document lists them).

    ``merchant_auth``: the bearer-token check of merchant actions (``POST /refunds/{id}/complete``),
    given by the composition root; without one those routes answer 403 (no token configured)."""
    app = FastAPI(title=title, version="1", responses=APP_RESPONSES, **_NO_NATIVE_TELEMETRY)
    app.state.service = service
    app.add_exception_handler(errors.DomainError, domain_error_handler)
    app.add_exception_handler(AuthProblem, auth_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    for exc_type, handler in (exception_handlers or {}).items():
        app.add_exception_handler(exc_type, handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
    included = [trading_router(service, merchant_auth), *routers]
    for router in included:
        document_request_errors(router)
    app.include_router(included[0], responses={**TRADING_RESPONSES, **(trading_responses or {})})
    for router in included[1:]:
        app.include_router(router)
    app.add_middleware(AllowMiddleware, routes=app.router.routes)
    return app


def trading_router(service: TradingService, merchant_auth: BearerAuth | None = None) -> APIRouter:
    """The trading routes; merchant actions depend on ``merchant_auth`` (default: disabled, 403)."""
    merchant = [Depends(merchant_auth if merchant_auth is not None else BearerAuth(None))]
    r = APIRouter()

    @r.post("/orders", status_code=201, response_model=OrderOut, tags=["orders"])
    async def place_order(body: PlaceOrderIn, response: Response) -> Any:
        view = await run_in_threadpool(service.place_order, PlaceOrder(
            buyer_id=body.buyer_id, tx_type=body.tx_type, channel=body.channel,
            lines=[LineItem(li.sku, li.qty) for li in body.lines], address=body.address.model_dump(),
            idempotency_key=body.idempotency_key,
            extra={"stage": body.stage} if body.stage is not None else {},
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
    async def pay_order(order_id: str, response: Response, body: PayIn | None = None) -> Any:
        view = await run_in_threadpool(service.pay_order, order_id, stage=body.stage if body else None)
        if any(p.status == "queued" for p in view.payments):
            response.status_code = 202
            response.headers["Location"] = f"/orders/{view.id}"
        return view

    @r.post("/orders/{order_id}/cancel", response_model=OrderOut, tags=["orders"])
    def cancel_order(order_id: str, body: CancelIn | None = None) -> Any:
        return service.cancel_order(order_id, reason=body.reason if body else "buyer")

    @r.post("/orders/{order_id}/refunds", status_code=201, response_model=RefundOut, tags=["refunds"])
    def request_refund(order_id: str, body: RefundIn, response: Response) -> Any:
        view = service.request_refund(order_id, [(li.sku, li.qty) for li in body.lines], kind=body.kind)
        response.headers["Location"] = f"/refunds/{view.id}"
        return view

    @r.get("/refunds/{refund_id}", response_model=RefundOut, tags=["refunds"])
    def get_refund(refund_id: str) -> Any:
        return service.get_refund(refund_id)

    @r.post("/refunds/{refund_id}/complete", response_model=RefundOut, tags=["refunds"],
            dependencies=merchant, responses=AUTH_RESPONSES)
    def complete_refund(refund_id: str) -> Any:
        return service.complete_refund(refund_id)

    @r.post("/refunds/{refund_id}/approve", response_model=RefundOut, tags=["refunds"],
            dependencies=merchant, responses=AUTH_RESPONSES)
    def approve_refund(refund_id: str) -> Any:
        """Merchant: approve. A refund-only refund is paid out now; a return waits for the goods."""
        return service.approve_refund(refund_id)

    @r.post("/refunds/{refund_id}/reject", response_model=RefundOut, tags=["refunds"],
            dependencies=merchant, responses=AUTH_RESPONSES)
    def reject_refund(refund_id: str, body: RejectIn) -> Any:
        return service.reject_refund(refund_id, body.reason)

    @r.post("/refunds/{refund_id}/goods-received", response_model=RefundOut, tags=["refunds"],
            dependencies=merchant, responses=AUTH_RESPONSES)
    def goods_received(refund_id: str) -> Any:
        """Merchant: the returned goods are back; the refund is paid out and the units restocked."""
        return service.receive_returned_goods(refund_id)

    @r.post("/sub-orders/{sub_order_id}/ship", response_model=OrderOut, tags=["delivery"],
            dependencies=merchant, responses=AUTH_RESPONSES)
    def ship(sub_order_id: str, body: ShipIn) -> Any:
        return service.ship(sub_order_id, body.carrier, body.tracking_no)

    @r.post("/sub-orders/{sub_order_id}/deliver", response_model=OrderOut, tags=["delivery"],
            dependencies=merchant, responses=AUTH_RESPONSES)
    def deliver(sub_order_id: str, body: DeliverIn | None = None) -> Any:
        return service.deliver(sub_order_id, collected=body.collected if body else None)

    @r.post("/sub-orders/{sub_order_id}/receive", response_model=OrderOut, tags=["delivery"])
    def receive(sub_order_id: str) -> Any:
        """The buyer confirms receipt (or the auto-receive job does, N days after delivery)."""
        return service.receive(sub_order_id)

    @r.post("/auctions", status_code=201, response_model=AuctionOut, tags=["auctions"],
            dependencies=merchant, responses=AUTH_RESPONSES)
    def create_auction(body: AuctionIn, response: Response) -> Any:
        """Merchant: put one unit of a SKU up for auction."""
        view = service.create_auction(
            sku=body.sku, start_price_cents=body.start_price_cents, increment_cents=body.increment_cents,
            reserve_cents=body.reserve_cents, starts_at=body.starts_at, ends_at=body.ends_at)
        response.headers["Location"] = f"/auctions/{view.id}"
        return view

    @r.get("/auctions/{auction_id}", response_model=AuctionOut, tags=["auctions"])
    def get_auction(auction_id: str) -> Any:
        return service.get_auction(auction_id)

    @r.post("/auctions/{auction_id}/bids", status_code=201, response_model=BidOut, tags=["auctions"])
    def place_bid(auction_id: str, body: BidIn) -> Any:
        """A bid: 409 before the start, after the end, or below the start price / current + increment."""
        return service.place_bid(auction_id, body.buyer_id, body.amount_cents,
                                 address=body.address.model_dump() if body.address else None)

    @r.get("/shops", response_model=list[ShopOut], tags=["catalog"])
    def list_shops() -> Any:
        return service.list_shops()

    @r.get("/shops/{shop_id}/products", response_model=list[ProductOut], tags=["catalog"])
    def list_products(shop_id: str) -> Any:
        return service.list_products(shop_id)

    return r
