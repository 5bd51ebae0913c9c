"""Delivery address with administrative levels country/province/city/district."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from domain.errors import InvalidRequest

_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{4,19}$")


@dataclass(frozen=True)
class Address:
    country: str
    province: str
    city: str
    district: str
    street: str
    recipient: str
    phone: str

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"address.{f.name} must be a non-empty string",
                                     field=f"address.{f.name}")
            if len(value) > 200:
                raise InvalidRequest(f"address.{f.name} is longer than 200 characters",
                                     field=f"address.{f.name}")
        if not _PHONE.match(self.phone):
            raise InvalidRequest(
                "address.phone must be 5-20 digits, optionally starting with + (spaces and - allowed)",
                field="address.phone",
            )
