"""The one RFC 9457 problem+json body of tradeguard.

Every error answer of a node is built here: the trading core's and the ``/ops`` routes' errors
(``domain.api.problems.problem``) and the guardians' refusals (``guardians.http.blocked_problem``,
which may not import ``domain``). ``type`` is ``TYPE_BASE`` + the kind (``order-not-found``,
``flow-blocked``…); extension members never shadow a standard one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://tradeguard.dev/problems/"
_RESERVED = frozenset({"type", "title", "status", "detail", "instance"})


def problem_body(
    status: int,
    kind: str,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    members: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem document of ``status``; ``kind`` names its ``type`` (``_`` spelled ``-``) and,
    without ``title``, its title. Members whose value is None are left out."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind.replace("_", "-"),
        "title": title or kind.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    for k, v in (members or {}).items():
        if v is None:
            continue
        if k in _RESERVED:  # never let an extension member shadow a standard one
            k = "current_status" if k == "status" else f"{k}_value"
        body[k] = v
    return body
