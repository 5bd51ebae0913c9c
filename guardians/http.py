"""HTTP side of guardians: problem+json answers for ``Blocked`` and a pure-ASGI middleware.

``blocked_problem(exc)`` maps a ``Blocked`` to ``(status, headers, body)``: 429 for
flow, param and system blocks, 503 for an open breaker, with ``Retry-After`` and an
RFC 9457 body naming the rule. Any HTTP layer can use it (e.g. a FastAPI exception
handler for ``Blocked`` raised deep inside a request).

``GuardMiddleware(app, engine, route_resolver)`` guards each request as the resource
``"METHOD /path/template"`` given by ``route_resolver(scope) -> str | None`` (None: not
guarded). Without a resolver, when added with ``app.add_middleware(GuardMiddleware,
engine=engine)`` to a Starlette/FastAPI app, it resolves against ``scope["app"].routes``.
Its checks run before the app is called, so a blocked request is answered
before anything reads its body. The request counts as inbound traffic (system rules
apply); a 5xx answer or an exception counts as an error for breakers on the route.

Building a route resolver: a resolver only needs the ASGI scope. For a Starlette or
FastAPI app, ``guardians.starlette_routes.starlette_route_resolver(app)`` walks
``app.routes`` (each route's ``matches(scope)``) and returns
``f"{method} {route.path}"`` for the first full match, e.g. ``"GET /orders/{order_id}"``.
Any other framework can supply its own function, e.g. a dict of exact paths.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, Final
from urllib.parse import parse_qs

from common.problems import PROBLEM_JSON, problem_body
from guardians.context import reset_caller, set_caller
from guardians.engine import CLIENT_IP_ONLY, Engine, _Slot
from guardians.errors import Blocked

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TITLES = {403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable"}
_STATUS = {"breaker": 503, "authority": 403}
MAX_BODY: Final = 1 << 20  # a JSON body read for ``body:`` params (larger ones are handed on unread)


_SPECS: dict[int, tuple[Any, Any]] = {}  # id(rule) -> (rule, to_dict()): rules are immutable


def _rule_spec(rule: Any) -> Any:
    """``rule.to_dict()``, computed once per rule object (a refusal flood blocks on a few rules)."""
    if not hasattr(rule, "to_dict"):
        return None
    hit = _SPECS.get(id(rule))
    if hit is not None and hit[0] is rule:
        return dict(hit[1])
    spec = rule.to_dict()
    if len(_SPECS) >= 1024:  # rules are replaced on every reload: bounded, cleared when full
        _SPECS.clear()
    _SPECS[id(rule)] = (rule, spec)
    return dict(spec)


def blocked_problem(exc: Blocked) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, problem+json body) for a blocked call: 403 authority, 503 breaker, else 429."""
    status = _STATUS.get(exc.kind, 429)
    retry = max(1, math.ceil(exc.retry_after_s or 1))
    members = {
        "resource": exc.resource,
        "rule": exc.rule_name,
        "rule_type": exc.kind,
        "rule_spec": _rule_spec(exc.rule),
        "retry_after_s": round(float(exc.retry_after_s or 0), 3),
    }
    body = problem_body(status, f"{exc.kind}_blocked", exc.detail, title=_TITLES[status], members=members)
    headers = {"content-type": PROBLEM_JSON}
    if status != 403:  # a refused origin is not told to come back later
        headers["retry-after"] = str(retry)
    return status, headers, body


DEGRADED_HEADER = "x-tradeguard-degraded"


@dataclass(frozen=True)
class RouteAnswer:
    """What a route fallback may return for a full answer; any other value is a 200 JSON body."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] | None = None


async def send_answer(send: Send, answer: Any, fallback: str) -> None:
    """A blocked route's fallback answer, marked ``X-Tradeguard-Degraded: <fallback name>``."""
    if not isinstance(answer, RouteAnswer):
        answer = RouteAnswer(answer)
    payload = json.dumps(answer.body, default=str).encode()
    headers = {"content-type": "application/json", **(answer.headers or {}), DEGRADED_HEADER: fallback}
    raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def send_problem(send: Send, exc: Blocked) -> None:
    status, headers, body = blocked_problem(exc)
    payload = json.dumps(body, default=str).encode()
    raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def _json_body(scope: Scope) -> bool:
    ctype = header(scope, "content-type") or ""
    return scope.get("method") in ("POST", "PUT", "PATCH") and ("json" in ctype or not ctype)


class TrustedProxies:
    """Peers whose forwarding headers are believed: addresses or CIDRs, comma-separated."""

    MAX_CACHED = 4096

    def __init__(self, spec: str | None = None) -> None:
        nets = []
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {part!r} is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1)"
                ) from None
        self.networks = tuple(nets)
        self._seen: dict[str, bool] = {}  # address -> trusted (bounded: cleared at MAX_CACHED entries)
        # raw X-Forwarded-For value -> the client it names behind trusted peers ("": the peer itself);
        # bounded like _seen. A client behind the same proxies sends the same value again and again.
        self._forwarded: dict[bytes, str] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not self.networks or not isinstance(address, str):
            return False
        seen = self._seen.get(address)
        if seen is not None:
            return seen
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            ok = False
        else:
            ok = any(ip in n for n in self.networks)
        if len(self._seen) >= self.MAX_CACHED:
            self._seen.clear()
        self._seen[address] = ok
        return ok

    def client_ip(self, scope: Scope) -> str | None:
        """The client's address: the peer, or — only when the peer is a trusted proxy — the right-most
        ``X-Forwarded-For`` address that is not itself a trusted proxy (its first one when all are).

        Compiled (``_NATIVE``), the ``type(x) is T`` tests narrow the ASGI values (typed ``Any``) to what
        every server passes — a ``(host, port)`` tuple, a list of ``(bytes, bytes)`` pairs — so that reading
        them is a typed C operation (a tuple item, a list item, a bytes compare) instead of the generic
        object protocol, about four times the instructions; other shapes, and the interpreted form (where
        the tests would only cost), take the generic way."""
        # (``_get``: compiled, a typed dict lookup; interpreted, the method is the faster)
        client = _get(scope, "client") if _NATIVE else scope.get("client")
        if not client:
            return None
        if _NATIVE and type(client) is tuple:  # noqa: SIM108 - the same read, typed in this branch
            peer = client[0]
        else:
            peer = client[0]
        if type(peer) is not str:
            peer = str(peer)
        if not self.networks:
            return peer
        trusted = self._seen.get(peer)
        if trusted is None:
            trusted = peer in self
        if not trusted:
            return peer
        headers = (_get(scope, "headers") if _NATIVE else scope.get("headers")) or ()
        raw = None
        if _NATIVE and type(headers) is list:
            raw = _xff_in_list(headers)
        else:
            for hdr in headers:  # the first X-Forwarded-For (ASGI servers lowercase header names) ...
                if hdr[0] == _XFF:
                    raw = hdr[1]
                    break
        if raw is None:
            for hdr in headers:  # ... or, from a server that does not, in any case
                k = hdr[0]
                if len(k) == 15 and k.lower() == _XFF:
                    raw = hdr[1]
                    break
        if not raw:
            return peer
        # one lookup, no call (a miss is rare: a client behind the same proxies sends the same value
        # again and again); "" stands for "the peer itself"
        forwarded = self._forwarded
        try:
            hop = forwarded[raw]
        except KeyError:
            hop = self._forwarded_client(raw.decode("latin-1")) or ""
            if len(forwarded) >= self.MAX_CACHED:
                forwarded.clear()
            forwarded[raw] = hop
        return hop or peer

    def _forwarded_client(self, xff: str) -> str | None:
        hops = [h.strip() for h in xff.split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in self:
                return hop
        return hops[0] if hops else None


def _get(scope: Scope, key: str) -> Any:
    """``scope.get(key)``; compiled, a direct dict lookup for the dict every ASGI server passes."""
    if isinstance(scope, dict):
        return scope.get(key)
    return scope.get(key)


_XFF: Final = b"x-forwarded-for"


def _probe() -> None:
    """(only to tell compiled from interpreted)"""


# whether this module runs compiled by mypyc (a compiled function has no ``__code__``)
_NATIVE: Final[bool] = not hasattr(_probe, "__code__")


def _xff_in_list(headers: list[Any]) -> Any:
    """(compiled) The value of the first header named exactly ``x-forwarded-for`` in a list of header
    pairs (None: none), each pair that is a ``(bytes, bytes)`` tuple — what servers pass — read with typed
    operations (see ``TrustedProxies.client_ip``), any other the generic way."""
    for hdr in headers:
        if type(hdr) is tuple and len(hdr) == 2:
            k = hdr[0]
            if type(k) is bytes:
                if k == _XFF:
                    return hdr[1]
                continue
        if hdr[0] == _XFF:
            return hdr[1]
    return None


def header(scope: Scope, name: str) -> str | None:
    """The first value of request header ``name`` (case-insensitive)."""
    key = name.lower().encode("latin-1")
    for hdr in _get(scope, "headers") or ():
        if hdr[0].lower() == key:
            return hdr[1].decode("latin-1")
    return None


def peer_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def client_ip(scope: Scope, trusted: TrustedProxies) -> str | None:
    """The client's address: the peer, or — only when the peer is a trusted proxy — the right-most
    ``X-Forwarded-For`` address that is not itself a trusted proxy (``TrustedProxies.client_ip``)."""
    return trusted.client_ip(scope)


_TEMPLATES: dict[str, re.Pattern[str] | None] = {}


def path_params(resource: str, path: str) -> dict[str, str]:
    """Path parameters of ``path`` under the route template of ``resource`` (``GET /orders/{order_id}``)."""
    rx = _TEMPLATES.get(resource)
    if rx is None and resource not in _TEMPLATES:
        template = resource.split(" ", 1)[1] if " " in resource else resource
        out, pos = "", 0
        for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}", template):
            out += re.escape(template[pos:m.start()])
            out += f"(?P<{m[1]}>.+)" if m[2] == "path" else f"(?P<{m[1]}>[^/]+)"
            pos = m.end()
        out += re.escape(template[pos:])
        rx = re.compile(out + "$") if "(?P<" in out else None
        if len(_TEMPLATES) > 10_000:
            _TEMPLATES.clear()
        _TEMPLATES[resource] = rx
    if rx is None:
        return {}
    found = rx.match(path)
    return found.groupdict() if found else {}


def request_args(
    scope: Scope, resource: str, needs: tuple[str, ...], trusted: TrustedProxies, body: Any = None
) -> dict[str, Any]:
    """The values of the request parameters ``needs`` (``client_ip``, ``header:NAME``, ``query:NAME``,
    ``path:NAME``, ``cookie:NAME``, ``body:FIELD``), keyed by those names; absent ones are left out."""
    # the commonest route param rule: per client address (``Engine.request_params`` answers it with
    # CLIENT_IP_ONLY itself: compiled, a generic tuple compare would cost more than the rest)
    if needs is CLIENT_IP_ONLY or needs == CLIENT_IP_ONLY:
        ip = trusted.client_ip(scope)
        return {"client_ip": ip} if ip is not None else {}
    out: dict[str, Any] = {}
    query: dict[str, list[str]] | None = None
    cookies: SimpleCookie | None = None
    params: dict[str, str] | None = None
    for need in needs:
        if need == "client_ip":
            value: Any = trusted.client_ip(scope)
            if value is not None:
                out[need] = value
            continue
        source, _, name = need.partition(":")
        value = None
        if source == "header":
            value = header(scope, name)
        elif source == "query":
            if query is None:
                query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
            vs = query.get(name)
            value = vs[0] if vs else None
        elif source == "path":
            if params is None:
                params = path_params(resource, scope.get("path", ""))
            value = params.get(name)
        elif source == "cookie":
            if cookies is None:
                cookies = SimpleCookie()
                try:
                    cookies.load(header(scope, "cookie") or "")
                except Exception:
                    pass
            morsel = cookies.get(name)
            value = morsel.value if morsel is not None else None
        elif source == "body" and isinstance(body, dict):
            v = body.get(name)
            value = v if isinstance(v, str | int | float) and not isinstance(v, bool) else None
        if value is not None:
            out[need] = value
    return out


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole request body (and whether the client disconnected meanwhile)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"") or b""
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


class _Replay:
    """A receive channel that hands the already-read body to the app, then the original channel.
    (A class, not a closure: compiled, a closure is an object with a ``__weakref__`` slot mypyc
    mishandles on Python 3.11 — guardians/README.md, "The compiled hot path".)"""

    def __init__(self, body: bytes, disconnected: bool, receive: Receive) -> None:
        self.body = body
        self.disconnected = disconnected
        self.receive = receive
        self.sent = False

    async def __call__(self) -> Message:
        if not self.sent:
            self.sent = True
            if self.disconnected and not self.body:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": self.body, "more_body": False}
        return await self.receive()


def _replay(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    """A receive channel that hands the already-read body to the app, then the original channel."""
    return _Replay(body, disconnected, receive)


class _StatusSend:
    """The app's send channel, noting the status of its answer (a class, not a closure: see ``_Replay``)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


REFUSED = "guardians.refused"  # scope key: a Blocked the door hands inward, answered by RefusalAnswer
_PROBLEMS: dict[tuple[Any, ...], tuple[Any, int, tuple[tuple[bytes, bytes], ...], bytes]] = {}


def _problem_bytes(exc: Blocked) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, raw headers, body) of ``send_problem``, built once per distinct refusal (rule, detail,
    retry): a refusal flood repeats a few answers hundreds of times a second."""
    rule = exc.rule
    retry = round(float(exc.retry_after_s or 0), 3)
    key = (id(rule), type(exc), exc.resource, exc.rule_name, exc.detail, retry)
    hit = _PROBLEMS.get(key)
    if hit is None or hit[0] is not rule:
        status, headers, body = blocked_problem(exc)
        payload = json.dumps(body, default=str).encode()
        raw = tuple((k.encode(), v.encode()) for k, v in headers.items())
        if len(_PROBLEMS) >= 1024:  # param details name the value: bounded, cleared when full
            _PROBLEMS.clear()
        hit = _PROBLEMS[key] = (rule, status, raw, payload)
    return hit[1], list(hit[2]), hit[3]


def _with_trace_id(raw: list[tuple[bytes, bytes]], payload: bytes, ids: tuple[str, str]) -> bytes:
    """The prebuilt problem with this request's trace: ``X-Trace-Id`` + ``traceparent`` headers and a
    ``trace_id`` member spliced into the JSON object (no re-serialisation)."""
    tid, sid = ids
    raw.append((b"x-trace-id", tid.encode()))
    raw.append((b"traceparent", f"00-{tid}-{sid}-00".encode()))
    return payload[:-1] + b', "trace_id": "' + tid.encode() + b'"}'


async def _answer_blocked(
    engine: Engine, scope: Scope, send: Send, resource: str, exc: Blocked,
    trace_ids: Callable[[Scope], tuple[str, str]] | None = None,
) -> None:
    """The route's fallback answer if its degrade rule has one that answers, else the problem
    (with the request's trace ids when ``trace_ids`` gives them: a refusal at the door)."""
    found = engine.route_fallback(resource)
    if found is not None:
        name, fn = found
        exc.path_params = path_params(resource, scope.get("path", ""))
        try:
            answer = fn(exc)
        except Exception:
            log.exception("fallback %s of %s failed; the block is answered", name, resource)
            answer = None
        if answer is not None:
            await send_answer(send, answer, name)
            return
    status, raw, payload = _problem_bytes(exc)
    if trace_ids is not None:
        payload = _with_trace_id(raw, payload, trace_ids(scope))
    raw.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class GuardMiddleware:
    """Pure ASGI middleware guarding routes as ``METHOD /path/template`` resources.

    Put it outermost (the door): a refused request then costs the route lookup, the checks and a
    prebuilt problem+json answer — nothing of the app's own stack (tracing, error handling,
    routing) runs for it. ``refuse_inside(resource, exc) -> bool``: when given and true for a
    refusal, the request is handed on with ``scope[REFUSED] = exc`` and answered by a
    ``RefusalAnswer`` placed inside the app's stack, e.g. inside tracing for the refusals the
    tracer would keep (a budget per rule); a route with a fallback (degrade rule) is then always
    answered inside. ``trace_ids(scope) -> (trace_id, span_id)`` (hex), when given, names the trace
    of a refusal answered at the door (``X-Trace-Id``, ``traceparent``, ``trace_id`` in the body), so
    every answer carries one even though no tracing runs for it.
    """

    def __init__(
        self,
        app: ASGIApp,
        engine: Engine,
        route_resolver: Callable[[Scope], str | None] | None = None,
        *,
        args_from: Callable[[Scope], Mapping[str, str] | None] | None = None,
        origin_from: Callable[[Scope], str | None] | None = None,
        trusted_proxies: TrustedProxies | str | None = None,
        refuse_inside: Callable[[str, Blocked], bool] | None = None,
        trace_ids: Callable[[Scope], tuple[str, str]] | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.route_resolver = route_resolver
        self._auto: tuple[int, Callable[[Scope], str | None]] | None = None
        self.args_from = args_from
        self.origin_from = origin_from
        tp = trusted_proxies
        self.trusted = tp if isinstance(tp, TrustedProxies) else TrustedProxies(tp)
        self.refuse_inside = refuse_inside
        self.trace_ids = trace_ids

    def _resolve(self, scope: Scope) -> str | None:
        if self.route_resolver is not None:
            return self.route_resolver(scope)
        # no resolver given: added with app.add_middleware(...), Starlette puts itself in scope["app"]
        app = scope.get("app")
        if app is None or not hasattr(app, "routes"):
            return None
        if self._auto is None or self._auto[0] != id(app):
            from guardians.starlette_routes import starlette_route_resolver

            self._auto = (id(app), starlette_route_resolver(app))
        return self._auto[1](scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _get(scope, "type") != "http":
            await self.app(scope, receive, send)
            return
        try:
            resource = self._resolve(scope)
        except Exception:
            log.exception("route resolver failed; request passes unguarded")
            resource = None
        if resource is None:
            await self.app(scope, receive, send)
            return
        args: Any = self.args_from(scope) if self.args_from else None
        origin = self.origin_from(scope) if self.origin_from else None
        needs = self.engine.request_params(resource)
        body = None
        if needs and any(n.startswith("body:") for n in needs) and _json_body(scope):
            raw, disconnected = await _read_body(receive)
            receive = _replay(raw, disconnected, receive)  # the route reads the same body
            if len(raw) <= MAX_BODY:
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
        token = set_caller(origin, resource)  # the domain's guard() calls of this request see them
        try:
            await self._guarded(scope, receive, send, resource, needs, args, origin, body)
        finally:
            reset_caller(token)

    def enter(
        self, scope: Scope, resource: str, needs: tuple[str, ...], args: Any, origin: str | None,
        body: Any = None,
    ) -> tuple[_Slot | None, float, float, Any, Any]:
        """The door of a request, before the app runs: the request parameters ``needs`` the route's
        param rules read (``request_args``; ``body`` is the request's JSON body when one is read) merged
        into ``args``, then the entry as inbound traffic (``Engine._enter``). Returns ``(slot, t0, wait,
        held, args)`` (``slot`` None: not guarded); a refusal raises ``Blocked``. Synchronous, one call:
        ``tradeguard bench guard`` times it, with the exit, as ``guard_ns_param_http``."""
        if needs:
            extra = request_args(scope, resource, needs, self.trusted, body)
            args = extra if not args else {**args, **extra}
        slot, t0, wait, held = self.engine._enter(resource, args, origin, True)
        return slot, t0, wait, held, args

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, resource: str, needs: tuple[str, ...], args: Any,
        origin: str | None, body: Any,
    ) -> None:
        engine = self.engine
        try:
            slot, t0, wait, held, args = self.enter(scope, resource, needs, args, origin, body)
        except Blocked as exc:
            inside = self.refuse_inside
            if inside is not None and (engine.route_fallback(resource) is not None or inside(resource, exc)):
                scope[REFUSED] = exc  # answered by RefusalAnswer inside the app's stack
                await self.app(scope, receive, send)
                return
            await _answer_blocked(engine, scope, send, resource, exc, self.trace_ids)  # before the app runs
            return
        if slot is None:
            await self.app(scope, receive, send)
            return
        if wait:
            await engine.clock.asleep(wait)
            t0, held = engine._pass(slot, True, args)
        send_wrapper = _StatusSend(send)
        error = True
        try:
            await self.app(scope, receive, send_wrapper)
            error = send_wrapper.status >= 500
        except Blocked as exc:
            # a Blocked raised deep inside the request that nobody handled
            if send_wrapper.status:
                raise
            await send_problem(send, exc)
            error = False
        finally:
            engine._exit(slot, t0, error, True, held)


class RefusalAnswer:
    """Answers, inside the app's stack, a request an outer ``GuardMiddleware`` refused and handed on
    (``scope[REFUSED]``): its route fallback or its problem+json. Any other request passes."""

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = scope.get(REFUSED)
        if exc is None:
            await self.app(scope, receive, send)
            return
        await _answer_blocked(self.engine, scope, send, exc.resource, exc)
