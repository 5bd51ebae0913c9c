"""Errors of the accounts package: each names the field or the user and what to do.

None of them ever carries a password or a hash.
"""

from __future__ import annotations

from common.identity import Forbidden


class AccountError(ValueError):
    """A bad account request (unknown user, bad role, short password, ...)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownUser(AccountError):
    pass


class SignInError(Exception):
    """A sign-in was refused; the message is safe to show on the login page."""


class BadCredentials(SignInError):
    def __init__(self) -> None:
        super().__init__("wrong username or password")


class AccountDisabled(SignInError):
    def __init__(self, name: str) -> None:
        super().__init__(f"the account {name} is disabled; ask an admin to enable it "
                         f"(tradeguard users enable {name})")
        self.name = name


class TooManyAttempts(SignInError):
    """``who`` is "for NAME" or "from ADDRESS"."""

    def __init__(self, who: str, retry_after_s: int) -> None:
        super().__init__(f"too many failed sign-ins {who}; try again in {retry_after_s} s")
        self.who = who
        self.retry_after_s = retry_after_s


__all__ = ["AccountDisabled", "AccountError", "BadCredentials", "Forbidden", "SignInError",
           "TooManyAttempts", "UnknownUser"]
