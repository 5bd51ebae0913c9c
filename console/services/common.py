"""What the page areas share: field errors, the rule types, a bounded metric read."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from collectors.query import MetricStore, Query, Row
from common.redact import redact_text
from guardians.rules import RULE_TYPES

__all__ = ["RULE_TYPES", "FieldError", "error_text", "errors_from", "run_query"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldError:
    path: str  # e.g. "flow[0].threshold" (or "" for the document)
    message: str


def errors_from(exc: Exception) -> list[FieldError]:
    """The (path, message) pairs of a validation error (``guardians.errors.RuleValidationError``,
    ``alerts.errors.AlertConfigError``), or the error's text for any other error."""
    pairs: Sequence[tuple[str, str]] = getattr(exc, "errors", None) or ()
    if pairs:
        return [FieldError(str(path), str(message)) for path, message in pairs]
    return [FieldError("", redact_text(str(exc)))]


def error_text(exc: Exception) -> str:
    """An error as a page shows it: its type and its text, with any URL's credentials masked."""
    return f"{type(exc).__name__}: {redact_text(str(exc))}"


def run_query(metrics: MetricStore, query: Query, errors: list[str], label: str) -> list[Row]:
    """Rows of ``query``; a store error becomes a message in ``errors`` (the page shows what it has)."""
    try:
        return metrics.query(query)
    except Exception as exc:
        log.warning("console query %s failed: %s", label, error_text(exc))
        errors.append(f"{label}: {error_text(exc)}")
        return []
