"""Circuit breakers: slow-ratio, error-ratio and error-count triggers on pybreaker's state machine."""

from guardians.breaker.rule import BreakerRule

__all__ = ["BreakerRule"]
