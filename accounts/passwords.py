"""Password hashing: argon2id (argon2-cffi), salted and memory-hard. Nothing here logs."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from accounts.errors import AccountError

MIN_LENGTH = 8
MAX_LENGTH = 1024


def check_strength(password: str) -> None:
    """Raise ``AccountError`` (field ``password``) for a password too short or too long."""
    if len(password) < MIN_LENGTH:
        raise AccountError(f"password is too short: at least {MIN_LENGTH} characters", field="password")
    if len(password) > MAX_LENGTH:
        raise AccountError(f"password is too long: at most {MAX_LENGTH} characters", field="password")
    if password.strip() != password:
        raise AccountError("password must not start or end with white space", field="password")


class Hasher:
    """argon2id hash / verify; ``verify_dummy`` spends the same time for an unknown user."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._ph = hasher or PasswordHasher()
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        try:
            return bool(self._ph.verify(stored_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return bool(self._ph.check_needs_rehash(stored_hash))
        except InvalidHashError:
            return False

    def verify_dummy(self, password: str) -> bool:
        """Verify against a hash of a random secret: as slow as a real check, always False."""
        if self._dummy is None:
            self._dummy = self._ph.hash(secrets.token_urlsafe(24))
        self.verify(self._dummy, password)
        return False


def random_password(nbytes: int = 12) -> str:
    """A random password (URL-safe, 16 characters for 12 bytes) for demo users."""
    return secrets.token_urlsafe(nbytes)
