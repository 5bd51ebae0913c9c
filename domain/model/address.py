"""Delivery address with administrative levels country/province/city/district.

``Address`` keeps what the buyer typed; ``Region`` (filled by the address library,
``domain.regions``) holds the canonical names and codes next to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from domain.errors import InvalidRequest

_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{4,19}$")
TYPED_FIELDS = ("country", "province", "city", "district", "street", "recipient", "phone")


@dataclass(frozen=True)
class Region:
    """Canonical names and codes of an address's levels (codes: ISO 3166 for country/province,
    the country's own division codes below, e.g. GB/T 2260 for China; None where the data has no level)."""

    country_code: str
    country: str
    province_code: str | None
    province: str
    city_code: str | None
    city: str
    district_code: str | None
    district: str
    postal_code: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """``asdict(region)`` without its deep copy of every value (on every order's write and answer)."""
        return {k: getattr(self, k) for k in _REGION_FIELDS}


_REGION_FIELDS = tuple(f.name for f in fields(Region))


@dataclass(frozen=True)
class Address:
    country: str
    province: str
    city: str
    district: str
    street: str
    recipient: str
    phone: str
    postal_code: str | None = None
    region: Region | None = None  # canonical form, set by the address library

    def __post_init__(self) -> None:
        for name in TYPED_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"address.{name} must be a non-empty string",
                                     field=f"address.{name}")
            if len(value) > 200:
                raise InvalidRequest(f"address.{name} is longer than 200 characters",
                                     field=f"address.{name}")
        if not _PHONE.match(self.phone):
            raise InvalidRequest(
                "address.phone must be 5-20 digits, optionally starting with + (spaces and - allowed)",
                field="address.phone",
            )
        if self.postal_code is not None and (not isinstance(self.postal_code, str)
                                             or not 1 <= len(self.postal_code.strip()) <= 20):
            raise InvalidRequest("address.postal_code must be a string of 1 to 20 characters",
                                 field="address.postal_code", rule="address.postal_code")

    def typed(self) -> dict[str, str]:
        """What the buyer typed (postal code only when given)."""
        out = {k: getattr(self, k) for k in TYPED_FIELDS}
        if self.postal_code is not None:
            out["postal_code"] = self.postal_code
        return out
