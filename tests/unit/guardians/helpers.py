"""Shared helpers for guardians unit tests."""

from __future__ import annotations

from typing import Any

from common.clock import FakeClock
from guardians import Blocked, Engine, parse_document
from guardians.system.probe import FixedProbe

T0 = 1_700_000_000.0


def engine(doc: dict[str, Any] | None = None, *, start: float = T0, probe: FixedProbe | None = None):
    clock = FakeClock(start)
    eng = Engine(clock, probe=probe or FixedProbe())
    if doc is not None:
        eng.apply(parse_document(doc))
    return eng, clock


def attempt(eng: Engine, resource: str, n: int = 1, **kw: Any) -> tuple[int, int]:
    """Call ``resource`` n times through guard(); return (passed, blocked)."""
    ok = blocked = 0
    for _ in range(n):
        try:
            eng.guard(resource, lambda: None, **kw)
            ok += 1
        except Blocked:
            blocked += 1
    return ok, blocked


def call_with_rt(eng: Engine, clock: FakeClock, resource: str, rt_s: float, *, fail: bool = False, **kw: Any):
    """One guarded call that takes rt_s on the fake clock and maybe raises."""

    def work() -> str:
        clock.advance(rt_s)
        if fail:
            raise RuntimeError("downstream failed")
        return "ok"

    return eng.guard(resource, work, **kw)
