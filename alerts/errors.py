"""Errors of the alerting package, each with a message a person can act on."""

from __future__ import annotations


class AlertError(Exception):
    """Base of every alerts error."""


class AlertConfigError(AlertError, ValueError):
    """An invalid alert document; ``errors`` lists (field path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        lines = "; ".join(f"{path}: {msg}" for path, msg in self.errors)
        super().__init__(f"invalid alert configuration ({len(self.errors)} error(s)): {lines}")


class NotFound(AlertError, LookupError):
    """No alert, silence or rule with that id/name."""


class InvalidAction(AlertError):
    """The action does not apply to the object in its current state (e.g. ack a resolved alert)."""
