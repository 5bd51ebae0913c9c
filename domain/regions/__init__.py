"""The address library: validates and normalizes delivery addresses against real region data.

- Countries and first-level subdivisions: ISO 3166-1 / 3166-2 from ``pycountry``.
- Lower levels (city, district) and postal codes: one data file per country,
  ``<ISO alpha-2>.json`` in ``domain/regions/data/`` or in any directory given to
  ``RegionLibrary(extra_dirs=...)`` / the ``TRADEGUARD_REGIONS_DIR`` environment variable
  (``os.pathsep``-separated). Adding a country's levels is adding a file: no code change.
  A country without a file is checked down to its ISO 3166-2 subdivision; its city and district
  are kept as typed.

China ships a curated subset of GB/T 2260 (the demo's provinces, cities and districts, with
postal prefixes): ``cpca`` (MIT) ships the full division table but only Chinese names, no postal
codes, and pulls pandas + pyahocorasick; see domain/README.md.

A data file::

    {"country": "CN", "levels": ["province", "city", "district"], "postal_code": "^[0-9]{6}$",
     "provinces": [{"code": "CN-ZJ", "name": "Zhejiang", "aliases": [...], "lat": .., "lon": ..,
                    "cities": [{"code": "330100", "name": "Hangzhou", "postal": ["310", "311"],
                                "districts": [{"code": "330106", "name": "Xihu"}]}]}]}

Refusals are ``InvalidRequest`` with ``field`` naming the level (``address.country``,
``address.province``, ``address.city``, ``address.district``, ``address.postal_code``).
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import pycountry

from domain.errors import InvalidRequest
from domain.model.address import Address, Region

DATA_DIR = Path(__file__).with_name("data")
_SUFFIXES = (" sheng", " shi", " zizhiqu", " province", " municipality", " city", " district", " qu",
             " autonomous region", " special administrative region")


def _key(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).strip().casefold()
    t = re.sub(r"[\s'’\-_.]+", " ", t).strip()
    for suffix in _SUFFIXES:
        if t.endswith(suffix) and len(t) > len(suffix):
            t = t[: -len(suffix)].strip()
    return t.replace(" ", "")


@dataclass
class _Node:
    code: str
    name: str
    keys: set[str]
    children: dict[str, _Node] = field(default_factory=dict)  # key -> node (several keys per node)
    postal: tuple[str, ...] = ()
    lat: float | None = None
    lon: float | None = None

    def find(self, text: str) -> _Node | None:
        return self.children.get(_key(text))

    def names(self) -> list[str]:
        return sorted({c.name for c in self.children.values()})


def _node(data: dict[str, Any], child_key: str | None, grandchild_key: str | None = None) -> _Node:
    n = _Node(code=str(data["code"]), name=str(data["name"]),
              keys={_key(data["name"]), _key(str(data["code"])), *(_key(a) for a in data.get("aliases", ()))},
              postal=tuple(data.get("postal", ())), lat=data.get("lat"), lon=data.get("lon"))
    if child_key:
        for c in data.get(child_key, ()):
            child = _node(c, grandchild_key)
            for k in child.keys:
                n.children[k] = child
    return n


@dataclass
class _Country:
    code: str
    name: str
    provinces: dict[str, _Node]  # key -> node
    has_file: bool
    postal_pattern: re.Pattern[str] | None = None


class RegionLibrary:
    """``normalize(address) -> address`` with ``region`` filled; ``distance(a, b)`` between provinces."""

    def __init__(self, extra_dirs: list[str | Path] | None = None) -> None:
        dirs = [DATA_DIR, *(Path(d) for d in (extra_dirs or ()))]
        env = os.environ.get("TRADEGUARD_REGIONS_DIR")
        if env:
            dirs += [Path(d) for d in env.split(os.pathsep) if d]
        self._files: dict[str, dict[str, Any]] = {}
        for d in dirs:
            for path in sorted(Path(d).glob("*.json")) if Path(d).is_dir() else ():
                data = json.loads(path.read_text(encoding="utf-8"))
                self._files[str(data.get("country") or path.stem).upper()] = data
        self._countries: dict[str, _Country] = {}
        self._centroids: dict[str, tuple[float, float]] = {}

    def _country(self, text: str) -> _Country:
        raw = text.strip()
        try:
            found = pycountry.countries.lookup(raw)
        except LookupError:
            found = None
        if found is None:
            raise InvalidRequest(
                f"address.country {raw!r} is not an ISO 3166 country (use a code like CN or a name)",
                field="address.country", rule="address.country_known")
        code = found.alpha_2
        if code not in self._countries:
            self._countries[code] = self._build(code, found.name)
        return self._countries[code]

    def _build(self, code: str, name: str) -> _Country:
        data = self._files.get(code)
        provinces: dict[str, _Node] = {}
        for sub in pycountry.subdivisions.get(country_code=code) or ():
            if getattr(sub, "parent_code", None):  # first-level subdivisions only
                continue
            short = sub.code.split("-", 1)[1]
            n = _Node(code=sub.code, name=sub.name, keys={_key(sub.name), _key(sub.code), _key(short)})
            for k in n.keys:
                provinces[k] = n
        if data is not None:
            for p in data.get("provinces", ()):
                node = _node(p, "cities", "districts")
                base = provinces.get(_key(node.code))
                if base is not None:  # ISO name and keys stay valid, the file adds aliases and levels
                    node.keys |= base.keys
                for k in node.keys:
                    provinces[k] = node
                if node.lat is not None and node.lon is not None:
                    self._centroids[node.code] = (float(node.lat), float(node.lon))
        pattern = data.get("postal_code") if data else None
        return _Country(code=code, name=name, provinces=provinces, has_file=data is not None,
                        postal_pattern=re.compile(pattern) if pattern else None)

    def normalize(self, address: Address) -> Address:
        country = self._country(address.country)
        province_name, province_code = address.province.strip(), None
        city_name, city_code = address.city.strip(), None
        district_name, district_code = address.district.strip(), None
        province = city = None
        if country.provinces:
            province = country.provinces.get(_key(address.province))
            if province is None:
                known = sorted({p.name for p in country.provinces.values()})
                raise InvalidRequest(
                    f"address.province {address.province!r} is not a province of {country.name}; "
                    f"known: {', '.join(known[:40])}", field="address.province",
                    rule="address.province_known", extra={"country": country.code})
            province_name, province_code = province.name, province.code
        if province is not None and province.children:
            city = province.find(address.city)
            if city is None:
                raise InvalidRequest(
                    f"address.city {address.city!r} is not a city of {province.name}; "
                    f"known: {', '.join(province.names())}", field="address.city",
                    rule="address.city_in_province", extra={"province": province.code})
            city_name, city_code = city.name, city.code
            if city.children:
                district = city.find(address.district)
                if district is None:
                    raise InvalidRequest(
                        f"address.district {address.district!r} is not a district of {city.name}; "
                        f"known: {', '.join(city.names())}", field="address.district",
                        rule="address.district_in_city", extra={"city": city.code})
                district_name, district_code = district.name, district.code
        postal = address.postal_code.strip() if address.postal_code else None
        if postal is not None:
            if country.postal_pattern is not None and not country.postal_pattern.match(postal):
                raise InvalidRequest(
                    f"address.postal_code {postal!r} is not a {country.name} postal code "
                    f"(pattern {country.postal_pattern.pattern})", field="address.postal_code",
                    rule="address.postal_code_format")
            prefixes = city.postal if city is not None else ()
            if prefixes and not postal.startswith(prefixes):
                raise InvalidRequest(
                    f"address.postal_code {postal!r} does not belong to {city_name} "
                    f"(its codes start with {', '.join(prefixes)})", field="address.postal_code",
                    rule="address.postal_code_matches", extra={"city": city_code})
        region = Region(country_code=country.code, country=country.name, province_code=province_code,
                        province=province_name, city_code=city_code, city=city_name,
                        district_code=district_code, district=district_name, postal_code=postal)
        return replace(address, region=region)

    def distance(self, province_a: str | None, province_b: str | None) -> float:
        """Great-circle km between two provinces' centroids; 0 for the same one, inf when unknown."""
        if province_a is None or province_b is None:
            return math.inf
        if province_a == province_b:
            return 0.0
        a, b = self._centroids.get(province_a), self._centroids.get(province_b)
        if a is None or b is None:
            return math.inf
        la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
        h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
        return 2 * 6371.0 * math.asin(math.sqrt(h))


@lru_cache(maxsize=1)
def default_library() -> RegionLibrary:
    return RegionLibrary()
