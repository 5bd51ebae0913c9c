"""A tiny field reader that collects (path, message) errors naming the allowed values."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

_MISSING = object()


def _fmt(v: Any) -> str:
    return repr(v) if not isinstance(v, str) else f"'{v}'"


class Fields:
    def __init__(self, raw: Any, path: str, errors: list[tuple[str, str]], allowed: Iterable[str]) -> None:
        self.path = path
        self.errors = errors
        self.ok = True
        self.allowed = tuple(allowed)
        if not isinstance(raw, Mapping):
            self.fail(
                path, f"must be a mapping of fields ({', '.join(self.allowed)}), got {type(raw).__name__}"
            )
            raw = {}
        self.raw = raw
        for key in raw:
            if key not in self.allowed:
                self.fail(f"{path}.{key}", f"unknown field; allowed fields: {', '.join(self.allowed)}")

    def fail(self, path: str, msg: str) -> None:
        self.ok = False
        self.errors.append((path, msg))

    def has(self, name: str) -> bool:
        return name in self.raw and self.raw[name] is not None

    def string(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        v = self.raw.get(name, _MISSING)
        if v is _MISSING or v is None:
            if required:
                self.fail(f"{self.path}.{name}", "is required (a non-empty string)")
            return default
        if not isinstance(v, str) or not v.strip():
            self.fail(f"{self.path}.{name}", f"must be a non-empty string, got {_fmt(v)}")
            return default
        if len(v) > 200:
            self.fail(f"{self.path}.{name}", "must be at most 200 characters")
            return default
        return v.strip()

    def choice(self, name: str, allowed: tuple[str, ...], *, default: str | None = None) -> str:
        v = self.raw.get(name, _MISSING)
        if v is _MISSING or v is None:
            if default is None:
                self.fail(f"{self.path}.{name}", f"is required; allowed values: {', '.join(allowed)}")
                return allowed[0]
            return default
        if v not in allowed:
            self.fail(f"{self.path}.{name}", f"must be one of {', '.join(allowed)}, got {_fmt(v)}")
            return default or allowed[0]
        return v

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        default: float | None = None,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
        integer: bool = False,
    ) -> Any:
        v = self.raw.get(name, _MISSING)
        p = f"{self.path}.{name}"
        rng = []
        if gt is not None:
            rng.append(f"> {gt}")
        if ge is not None:
            rng.append(f">= {ge}")
        if le is not None:
            rng.append(f"<= {le}")
        allowed = f"{'an integer' if integer else 'a number'}{' ' + ' and '.join(rng) if rng else ''}"
        if v is _MISSING or v is None:
            if required:
                self.fail(p, f"is required ({allowed})")
            return default
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or (isinstance(v, float) and not math.isfinite(v))
        ):
            self.fail(p, f"must be {allowed}, got {_fmt(v)}")
            return default
        if integer and isinstance(v, float):
            if not v.is_integer():
                self.fail(p, f"must be {allowed}, got {_fmt(v)}")
                return default
            v = int(v)
        if (
            (gt is not None and not v > gt)
            or (ge is not None and not v >= ge)
            or (le is not None and not v <= le)
        ):
            self.fail(p, f"must be {allowed}, got {_fmt(v)}")
            return default
        if abs(v) > 1e12:
            self.fail(p, f"must be {allowed} and at most 1e12, got {_fmt(v)}")
            return default
        return v

    def boolean(self, name: str, *, default: bool = False) -> bool:
        v = self.raw.get(name, _MISSING)
        if v is _MISSING or v is None:
            return default
        if not isinstance(v, bool):
            self.fail(f"{self.path}.{name}", f"must be true or false, got {_fmt(v)}")
            return default
        return v

    def forbid(self, name: str, why: str) -> None:
        if self.has(name):
            self.fail(f"{self.path}.{name}", why)
