"""Param rule: at most ``threshold`` calls per ``duration_s`` for each value of one argument."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guardians._validate import Fields

FIELDS = ("name", "resource", "param", "threshold", "duration_s", "burst", "exceptions")


@dataclass(frozen=True)
class ParamRule:
    resource: str
    param: str
    threshold: int
    duration_s: int = 1
    burst: int = 0
    exceptions: tuple[tuple[str, int], ...] = ()
    name: str = ""

    kind = "param"

    def limit_for(self, value: str) -> int:
        for v, n in self.exceptions:
            if v == value:
                return n
        return self.threshold

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "resource": self.resource,
            "param": self.param,
            "threshold": self.threshold,
            "duration_s": self.duration_s,
            "burst": self.burst,
        }
        if self.exceptions:
            d["exceptions"] = dict(self.exceptions)
        return d


def parse_param(raw: Any, path: str, errors: list[tuple[str, str]]) -> ParamRule | None:
    f = Fields(raw, path, errors, FIELDS)
    resource = f.string("resource", required=True)
    param = f.string("param", required=True)
    threshold = f.number("threshold", required=True, ge=0, le=10_000_000, integer=True)
    duration = f.number("duration_s", default=1, ge=1, le=86_400, integer=True)
    burst = f.number("burst", default=0, ge=0, le=10_000_000, integer=True)
    exceptions: list[tuple[str, int]] = []
    raw_exc = f.raw.get("exceptions") if isinstance(f.raw, Mapping) else None
    if raw_exc is not None:
        if not isinstance(raw_exc, Mapping):
            f.fail(
                f"{path}.exceptions", "must be a mapping of parameter value to threshold (an integer >= 0)"
            )
        else:
            for k, v in raw_exc.items():
                if isinstance(k, bool) or not isinstance(k, str | int) or str(k) == "":
                    f.fail(f"{path}.exceptions", f"keys must be parameter values (strings), got {k!r}")
                    continue
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10_000_000:
                    f.fail(f"{path}.exceptions.{k}", f"must be an integer >= 0 and <= 10000000, got {v!r}")
                    continue
                exceptions.append((str(k), v))
    name = f.string("name") or ""
    if not f.ok:
        return None
    assert resource is not None and param is not None
    return ParamRule(
        resource=resource,
        param=param,
        threshold=threshold,
        duration_s=duration,
        burst=burst,
        exceptions=tuple(sorted(exceptions)),
        name=name or f"param:{resource}:{param}",
    )
