"""Password hashing (argon2id) and SCRAM-SHA-256 verifiers; never the password itself.

Both hashing and verification are CPU-heavy by design, so callers run them in a thread.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from popgate.protocol._scram_keys import ScramCredentials, derive_scram_credentials

__all__ = ["hash_password", "needs_rehash", "verify_hash"]

_HASHER = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 "low memory" defaults


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random secret with the current parameters, to verify unknown users against.

    Verifying against it costs as much as a real verification, so response time does not tell
    whether a user exists; the secret is random, so nothing ever matches it.
    """
    return _HASHER.hash(secrets.token_urlsafe(32))


def hash_password(password: str) -> tuple[str, ScramCredentials]:
    """Return the argon2id hash and the SCRAM-SHA-256 verifier of ``password``."""
    return _HASHER.hash(password), derive_scram_credentials(password)


def verify_hash(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; a None hash costs the same and fails."""
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        # VerifyMismatchError is a VerificationError; a corrupt stored hash is a failed login.
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with parameters older than the current ones."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False
