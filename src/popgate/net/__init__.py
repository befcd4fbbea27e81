"""asyncio networking: TLS, the session driver, listeners."""

from __future__ import annotations

from popgate.net._session import SessionDriver, SessionTimers
from popgate.net._tls import TlsConfigError, create_self_signed_certificate, server_context

__all__ = [
    "SessionDriver",
    "SessionTimers",
    "TlsConfigError",
    "create_self_signed_certificate",
    "server_context",
]
