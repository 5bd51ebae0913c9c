"""Degrade: a named fallback per resource that answers instead of a blocked call."""

from guardians.degrade.rule import DegradeRule

__all__ = ["DegradeRule"]
