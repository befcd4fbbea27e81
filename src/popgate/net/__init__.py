"""asyncio networking: TLS, the session driver, listeners."""

from __future__ import annotations

from popgate.net._session import (
    Exchange,
    SessionDriver,
    SessionLogAdapter,
    SessionTimers,
    format_address,
)
from popgate.net._tls import (
    TlsConfigError,
    create_self_signed_certificate,
    pinned_context,
    server_context,
)

__all__ = [
    "Exchange",
    "SessionDriver",
    "SessionLogAdapter",
    "SessionTimers",
    "TlsConfigError",
    "create_self_signed_certificate",
    "format_address",
    "pinned_context",
    "server_context",
]
