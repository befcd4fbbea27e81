"""sd_notify(3): tell a supervisor (systemd, or popgate's own service host) our state."""

from __future__ import annotations

import contextlib
import os
import socket

__all__ = ["notify"]


def notify(message: str) -> None:
    """Send ``message`` (e.g. ``READY=1``) to $NOTIFY_SOCKET; do nothing when unsupervised."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
    ):
        sock.sendto(message.encode("utf-8"), address)
