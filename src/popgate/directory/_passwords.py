"""Password hashing (argon2id) and SCRAM-SHA-256 verifiers; never the password itself.

Both hashing and verification are CPU-heavy by design, so callers run them in a thread;
:class:`AuthCache` lets a repeated successful login skip the verification.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from collections import OrderedDict
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from popgate.protocol._scram_keys import ScramCredentials, derive_scram_credentials

__all__ = [
    "AUTH_CACHE_SIZE",
    "AUTH_CACHE_TTL",
    "AuthCache",
    "hash_password",
    "needs_rehash",
    "verify_hash",
]

#: Seconds a successful verification is remembered (Dovecot's auth_cache_ttl default).
AUTH_CACHE_TTL: Final = 3600.0
#: Most remembered verifications (a few hundred bytes each); the least recently used go first.
AUTH_CACHE_SIZE: Final = 100_000

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


def _monotonic() -> float:
    """The cache's clock; a module function so that tests can move time on."""
    return time.monotonic()


class AuthCache:
    """Successful argon2id verifications of the last :data:`AUTH_CACHE_TTL` seconds.

    Each entry is a keyed hash of (stored hash, password), so a hit says "this exact
    password was verified against this exact stored hash": verification is a function of
    those two alone, so the mailbox need not be part of the key. Setting a password stores
    a new hash with a new salt, which no old entry can match, and a removed mailbox has no
    row to look up: nothing is ever invalidated, and a changed password is never accepted.
    The caller still reads the row at every login; only the argon2 computation is skipped.
    Failures are never added, so every wrong guess pays for a full verification.

    Memory only, one per :class:`~popgate.directory.Directory` (so per process).
    """

    def __init__(self) -> None:
        """An empty cache with a fresh random key."""
        # Trade-off: whoever reads this process's memory, key included, can test guesses
        # against an entry at BLAKE2 speed instead of argon2's. Hence the entries are a
        # keyed hash, not a plain one, with a random key that is never stored or sent
        # anywhere, and the entries last an hour at most. Such a reader could also take the
        # passwords themselves as logins pass through.
        self._key = secrets.token_bytes(32)
        self._expiries: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        """How many entries are held, expired ones included until they are looked up."""
        return len(self._expiries)

    def key(self, password_hash: str, password: str) -> bytes:
        """The entry for ``password`` checked against a mailbox's stored ``password_hash``."""
        digest = hashlib.blake2b(key=self._key, digest_size=32)
        # Each part is length-prefixed, so no two different pairs feed the same bytes;
        # "surrogatepass": a lone surrogate still reaches argon2, which rejects it as before.
        for part in (password_hash.encode("utf-8"), password.encode("utf-8", "surrogatepass")):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.digest()

    def hit(self, key: bytes) -> bool:
        """Whether ``key`` was verified less than :data:`AUTH_CACHE_TTL` seconds ago."""
        expiry = self._expiries.get(key)
        if expiry is None:
            return False
        if _monotonic() >= expiry:
            del self._expiries[key]
            return False
        self._expiries.move_to_end(key)  # recently used: evicted last
        return True

    def add(self, key: bytes) -> None:
        """Remember a successful verification; evicts the least recently used beyond the bound."""
        self._expiries[key] = _monotonic() + AUTH_CACHE_TTL
        self._expiries.move_to_end(key)
        while len(self._expiries) > AUTH_CACHE_SIZE:
            self._expiries.popitem(last=False)
