"""What the host, its API and its clients agree on, kept free of heavy imports.

``popgate net`` and ``popgate status`` import this and the client only, so that they start
quickly; the server side (FastAPI, uvicorn) loads in ``popgate host`` alone.
"""

from __future__ import annotations

from pathlib import Path

from popgate.home import Home

__all__ = [
    "API_PREFIX",
    "DEFAULT_HTTPS_BINDING",
    "ERROR_ACCESS_DENIED",
    "ERROR_ALREADY_EXISTS",
    "ERROR_INVALID_PARAMETER",
    "ERROR_LOGON_FAILURE",
    "ERROR_MEMBER_NOT_IN_GROUP",
    "ERROR_NOT_FOUND",
    "ERROR_NO_SUCH_GROUP",
    "ERROR_NO_SUCH_USER",
    "ERROR_SERVICE_ALREADY_RUNNING",
    "ERROR_SERVICE_DISABLED",
    "ERROR_SERVICE_DOES_NOT_EXIST",
    "ERROR_SERVICE_NOT_ACTIVE",
    "ERROR_SPECIAL_USER",
    "HostError",
    "control_socket_path",
    "parse_https_binding",
]

API_PREFIX = "/api/v1"
#: The control API (and, later, the admin center) over HTTPS: loopback until opened up.
DEFAULT_HTTPS_BINDING = "127.0.0.1:8443"

#: Windows error numbers that net.exe and PowerShell report.
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_PARAMETER = 87
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DISABLED = 1058
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
#: The HTTPS caller has not logged in, or got the password wrong.
ERROR_LOGON_FAILURE = 1326
#: Management API refusals, numbered as Windows numbers the same conditions.
ERROR_ALREADY_EXISTS = 183
ERROR_NOT_FOUND = 1168
#: There is no mailbox of that name or address.
ERROR_NO_SUCH_USER = 1317
ERROR_NO_SUCH_GROUP = 1319
ERROR_MEMBER_NOT_IN_GROUP = 1321
#: The built-in Administrator mailbox cannot be removed.
ERROR_SPECIAL_USER = 1373


class HostError(Exception):
    """The host cannot run; the message says why and what to do."""


def control_socket_path(home: Home) -> Path:
    """Where the host's control API listens for local callers."""
    return home.run_dir / "host.sock"


def parse_https_binding(binding: str) -> tuple[str, int]:
    """``127.0.0.1:8443`` or ``[::]:8443`` as (host, port); :class:`HostError` if malformed."""
    host, colon, port = binding.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise HostError(f"{binding!r} is not an address:port binding, e.g. 127.0.0.1:8443")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":port"
