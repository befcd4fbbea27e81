"""cmd.exe's ``net start`` / ``net stop`` messages, word for word (exchange-pop3.md 8.2).

Pure text: the ``popgate net`` command prints these and exits with the status they carry
(0 on success, 2 on error, as net.exe does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "NetOutput",
    "access_denied",
    "already_started",
    "disabled",
    "invalid_name",
    "not_started",
    "started_list",
    "starting",
    "stopping",
]

SUCCESS = 0
FAILURE = 2


@dataclass(frozen=True, slots=True)
class NetOutput:
    """What net.exe prints and its exit status."""

    text: str
    status: int


def _help(message: str, number: int) -> NetOutput:
    return NetOutput(
        f"{message}\n\nMore help is available by typing NET HELPMSG {number}.\n\n", FAILURE
    )


def _system_error(number: int, message: str) -> NetOutput:
    return NetOutput(f"System error {number} has occurred.\n\n{message}\n\n", FAILURE)


def starting(display_name: str, pending_ticks: int, *, ok: bool) -> NetOutput:
    """``The X service is starting.`` with a dot per pending tick, then the result line."""
    line = f"The {display_name} service is starting" + "." * (1 + pending_ticks) + "\n"
    if ok:
        return NetOutput(f"{line}The {display_name} service was started successfully.\n\n", 0)
    return NetOutput(f"{line}The {display_name} service could not be started.\n\n", FAILURE)


def stopping(display_name: str, pending_ticks: int) -> NetOutput:
    """``The X service is stopping.`` with dots while pending, then stopped successfully."""
    line = f"The {display_name} service is stopping" + "." * (1 + pending_ticks) + "\n"
    return NetOutput(f"{line}The {display_name} service was stopped successfully.\n\n", SUCCESS)


def already_started() -> NetOutput:
    """net start on a running service."""
    return _help("The requested service has already been started.", 2182)


def not_started(display_name: str) -> NetOutput:
    """net stop on a stopped service."""
    return _help(f"The {display_name} service is not started.", 3521)


def invalid_name() -> NetOutput:
    """A name that is neither a key name nor a display name."""
    return _help("The service name is invalid.", 2185)


def access_denied() -> NetOutput:
    """The caller may not control services."""
    return _system_error(5, "Access is denied.")


def disabled() -> NetOutput:
    """net start on a Disabled service."""
    return _system_error(
        1058,
        "The service cannot be started, either because it is disabled or because it has no "
        "enabled devices associated with it.",
    )


def started_list(display_names: Iterable[str]) -> NetOutput:
    """``net start`` with no name: the started services."""
    names = "".join(f"   {name}\n" for name in display_names)
    return NetOutput(
        f"These Windows services are started:\n\n{names}\nThe command completed successfully.\n\n",
        SUCCESS,
    )
