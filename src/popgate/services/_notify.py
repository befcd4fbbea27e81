"""sd_notify(3): tell a supervisor (systemd, or popgate's own service host) our state."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket

__all__ = ["SUPERVISOR_PID_VARIABLE", "die_with_supervisor", "notify"]

#: Set by a supervisor (the service host; a front end for its workers) to its own pid.
SUPERVISOR_PID_VARIABLE = "POPGATE_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


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


def die_with_supervisor() -> bool:
    """Have the kernel kill this process when the supervisor that started it dies.

    A host killed with SIGKILL cannot stop its services; left running, orphaned, they would
    hold the ports and the next host could start none of them. systemd's KillMode does the
    same to a unit's processes. Returns False when the supervisor is already gone (the
    caller exits); True otherwise, including when nobody supervises this process.
    """
    expected = os.environ.get(SUPERVISOR_PID_VARIABLE, "")
    if not expected.isdigit():
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return True  # not Linux: the supervisor's own stop is all there is
    # It may have died between starting us and the prctl, which then never fires.
    return os.getppid() == int(expected)
