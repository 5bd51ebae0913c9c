"""The console's session cookie: an HttpOnly, SameSite=Strict cookie holding the opaque token of a
server-side session (``accounts``), set and cleared by two small HTTP routes of the Streamlit server.

Why routes: a Streamlit script talks to the browser over a WebSocket and can read the request's
cookies (``st.context.cookies``) but cannot set one, and a cookie written by JavaScript cannot be
HttpOnly. Since Streamlit 1.53 an app can be served as ``st.App`` (Starlette) with its own routes
(streamlit/streamlit#861; a writable ``st.context.cookies`` is still only proposed, #14730), so:

1. after a good sign-in the script opens the server session, puts its token in ``TICKETS`` under a
   one-time ticket (random, 60 s) and renders a same-origin ``fetch`` of ``POST /_tg/session`` with
   that ticket (``claim_script``);
2. the route takes the token for the ticket (once) and answers with ``Set-Cookie`` (HttpOnly,
   SameSite=Strict, Path=/, Max-Age = the session's maximum age, Secure over https);
3. a reload or a second tab opens a new Streamlit session whose ``st.context.cookies`` carries the
   token: the script resumes the server session from it;
4. sign-out revokes the server session, then ``POST /_tg/session/clear`` expires the cookie, if
   it still holds that session (``clear_proof``: a tab signing out, or finding its session ended,
   does not clear a newer sign-in made in another tab).

The token never reaches the page or its JavaScript (only the ticket does: good once, for a minute,
from the browser's address), and script-injected code cannot read the cookie (nor the Set-Cookie
of a claim it makes itself). Both routes refuse cross-site requests (Origin or
Sec-Fetch-Site), so another site cannot plant its own session in the browser (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CLAIM_PATH = "/_tg/session"
CLEAR_PATH = "/_tg/session/clear"
DEFAULT_NAME = "tg_console_session"


@dataclass(frozen=True)
class CookiePolicy:
    """``secure``: True or False forces the attribute; None sets it when the request came over https
    (directly, or through a proxy saying so in ``X-Forwarded-Proto``)."""

    name: str = DEFAULT_NAME
    max_age_s: int = 12 * 3600
    secure: bool | None = None


class TicketBox:
    """One-time tickets → session tokens, in this process's memory (the script and the routes run
    in the same Streamlit server process). A ticket lives ``ttl_s`` seconds and is taken once; one
    given out for a client address is taken only from that address."""

    def __init__(self, ttl_s: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._now = monotonic
        self._lock = threading.Lock()
        self._items: dict[str, tuple[str, float, str | None]] = {}

    def put(self, token: str, client: str | None = None) -> str:
        ticket = secrets.token_urlsafe(24)
        with self._lock:
            self._drop_old()
            self._items[ticket] = (token, self._now() + self.ttl_s, client)
        return ticket

    def take(self, ticket: str, client: str | None = None) -> str | None:
        """The token of ``ticket``, once; None when unknown, expired, or bound to another client."""
        with self._lock:
            self._drop_old()
            found = self._items.get(ticket)
            if found is None or (found[2] is not None and found[2] != client):
                return None
            del self._items[ticket]
        return found[0]

    def pending(self, ticket: str) -> bool:
        """Not yet taken and not expired."""
        with self._lock:
            self._drop_old()
            return ticket in self._items

    def _drop_old(self) -> None:
        now = self._now()
        for key in [k for k, (_, until, _c) in self._items.items() if until <= now]:
            del self._items[key]


TICKETS = TicketBox()


# ------------------------------------------------------------------------------------- in the page
def claim_script(ticket: str) -> str:
    """The HTML (for ``st.html(..., unsafe_allow_javascript=True)``) that exchanges ``ticket`` for
    the cookie. The ticket is URL-safe base64 (no quote or tag can be in it)."""
    if not ticket.replace("-", "").replace("_", "").isalnum():
        raise ValueError("a ticket is URL-safe base64")
    return _post_script("claim", CLAIM_PATH, {"ticket": ticket})


def clear_proof(token: str) -> str:
    """What the page sends to clear the cookie holding ``token``: a one-way value of it (neither the
    token nor the hash the control DB keys sessions by)."""
    return hashlib.sha256(b"tg-clear:" + token.encode("utf-8")).hexdigest()


def clear_script(proof: str) -> str:
    if not proof.isalnum():
        raise ValueError("a clear proof is hex")
    return _post_script("clear", CLEAR_PATH, {"proof": proof})


def _post_script(kind: str, path: str, payload: dict[str, str]) -> str:
    """A hidden marker (``data-tg-session=kind``: which exchange the page ran) and a script that POSTs
    ``payload`` as JSON to ``path`` on this origin, with its cookies."""
    body = json.dumps(payload)
    return (
        f'<span data-tg-session="{kind}" hidden></span>'
        f"<script>fetch({json.dumps(path)}, {{method: 'POST', credentials: 'same-origin', "
        f"headers: {{'Content-Type': 'application/json'}}, body: {json.dumps(body)}}});</script>"
    )


# ------------------------------------------------------------------------------------- the routes
def _same_origin(request: Any) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
    return origin.split("://", 1)[-1].rstrip("/") == host.split(",")[0].strip()


def _secure(policy: CookiePolicy, request: Any) -> bool:
    if policy.secure is not None:
        return policy.secure
    proto = (request.headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or proto == "https"


def routes(policy: CookiePolicy, tickets: TicketBox | None = None) -> list:
    """The two Starlette routes of the session cookie, for ``st.App(..., routes=...)``."""
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    box = tickets or TICKETS

    def refused(status: int, detail: str) -> Response:
        return JSONResponse({"detail": detail}, status_code=status, headers={"Cache-Control": "no-store"})

    async def claim(request: Any) -> Response:
        if not _same_origin(request):
            return refused(403, "cross-site request refused")
        try:
            ticket = str((await request.json()).get("ticket") or "")
        except (ValueError, AttributeError):
            return refused(400, "a JSON body with a ticket is expected")
        client = request.client.host if request.client else None
        token = box.take(ticket, client) if ticket else None
        if token is None:
            return refused(400, "unknown or expired ticket; sign in again")
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        response.set_cookie(policy.name, token, max_age=policy.max_age_s, path="/", httponly=True,
                            samesite="strict", secure=_secure(policy, request))
        return response

    async def clear(request: Any) -> Response:
        """Expire the cookie when it holds the session of the proof (else leave it: 204 either way)."""
        if not _same_origin(request):
            return refused(403, "cross-site request refused")
        try:
            proof = str((await request.json()).get("proof") or "")
        except (ValueError, AttributeError):
            return refused(400, "a JSON body with a proof is expected")
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        held = request.cookies.get(policy.name)
        if held and proof and hmac.compare_digest(clear_proof(held), proof):
            response.delete_cookie(policy.name, path="/", httponly=True, samesite="strict",
                                   secure=_secure(policy, request))
        return response

    return [Route(CLAIM_PATH, claim, methods=["POST"]), Route(CLEAR_PATH, clear, methods=["POST"])]
