"""SCRAM-SHA-256 key derivation (RFC 5802 section 3, RFC 7677).

The directory stores only these derived values beside the argon2id hash, so the server never
keeps a cleartext-equivalent secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

#: RFC 7677 section 4: at least 4096 iterations.
DEFAULT_ITERATIONS = 4096
SALT_BYTES = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class ScramCredentials:
    """The verifier a SCRAM-SHA-256 server keeps for one user."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    """Hi(Normalize(password), salt, i) of RFC 5802 section 2.2."""
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def derive_scram_credentials(
    password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> ScramCredentials:
    """Derive StoredKey and ServerKey from a password (SASLprep is the caller's concern)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = salted_password(password.encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", "sha256"),
    )
