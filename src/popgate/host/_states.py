"""Service states and startup types, as the Windows service control manager names them."""

from __future__ import annotations

from enum import Enum, IntEnum

__all__ = ["ServiceState", "StartupType"]


class ServiceState(IntEnum):
    """SERVICE_STATUS dwCurrentState; the numbers are Windows' (Sort-Object Status uses them)."""

    #: Not running.
    STOPPED = 1
    #: Started, not yet listening.
    START_PENDING = 2
    #: Asked to stop, still draining sessions.
    STOP_PENDING = 3
    #: Listening and serving.
    RUNNING = 4

    @property
    def label(self) -> str:
        """The PowerShell Status text: Stopped, StartPending, StopPending, Running."""
        return "".join(part.capitalize() for part in self.name.split("_"))


class StartupType(Enum):
    """How a service starts: with the host, by an administrator, or not at all."""

    AUTOMATIC = "Automatic"
    MANUAL = "Manual"
    DISABLED = "Disabled"
