"""Bearer-token protection of a node's control routes and merchant actions.

``BearerAuth(token)`` is a FastAPI dependency given by the composition root (the trading API never
reads settings): a missing or wrong ``Authorization: Bearer <token>`` answers 401 problem+json with
``WWW-Authenticate: Bearer``; with no token configured the protected routes answer 403 problem+json
saying how to enable them (``how_to_enable``). Tokens are compared with ``hmac.compare_digest`` and
never appear in a log line or an answer.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse

from domain.api.problems import problem, problem_responses


class AuthProblem(Exception):
    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers


AUTH_RESPONSES = {
    **problem_responses(401, description="missing or wrong bearer token (WWW-Authenticate: Bearer)"),
    **problem_responses(403, description="no control token configured on this node: the route is disabled"),
}

REALM = 'Bearer realm="tradeguard"'


class BearerAuth:
    """``Depends(BearerAuth(token))``: the request must carry ``Authorization: Bearer <token>``."""

    def __init__(
        self, token: str | None, *, how_to_enable: str = "configure a control token on the node"
    ) -> None:
        self._token = token.encode() if token else None
        self.how_to_enable = how_to_enable

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def __call__(self, request: Request) -> None:
        if self._token is None:
            raise AuthProblem(
                403,
                "control_token_not_configured",
                f"{request.method} {request.url.path} needs a bearer token, and none is configured on "
                f"this node, so the route is disabled; {self.how_to_enable}",
            )
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthProblem(401, "unauthorized",
                              "this route needs the header Authorization: Bearer <token>",
                              headers={"WWW-Authenticate": REALM})
        if not hmac.compare_digest(value.strip().encode(), self._token):
            raise AuthProblem(401, "unauthorized", "the bearer token is not valid for this node",
                              headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})


async def auth_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthProblem)
    title = "Unauthorized" if exc.status == 401 else "Control API disabled"
    return problem(exc.status, exc.kind, exc.detail, title=title, instance=request.url.path,
                   headers=exc.headers)
