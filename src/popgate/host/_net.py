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
    "start_result",
    "started_list",
    "starting",
    "starting_line",
    "stop_result",
    "stopping",
    "stopping_line",
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


def starting_line(display_name: str) -> str:
    """The first line of ``net start``, printed at once; a dot follows per pending second."""
    return f"The {display_name} service is starting."


def start_result(display_name: str, error: str | None = None) -> NetOutput:
    """What ``net start`` prints after the dots: started, or could not start and why."""
    if error is None:
        return NetOutput(f"\nThe {display_name} service was started successfully.\n\n", SUCCESS)
    return NetOutput(f"\nThe {display_name} service could not be started.\n\n{error}\n\n", FAILURE)


def starting(display_name: str, pending_ticks: int, error: str | None = None) -> NetOutput:
    """The whole ``net start`` output for a service that was stopped."""
    result = start_result(display_name, error)
    line = starting_line(display_name) + "." * pending_ticks
    return NetOutput(line + result.text, result.status)


def stopping_line(display_name: str) -> str:
    """The first line of ``net stop``; a dot follows per pending second."""
    return f"The {display_name} service is stopping."


def stop_result(display_name: str, note: str | None = None) -> NetOutput:
    """What ``net stop`` prints after the dots (``note``: e.g. it had to be killed)."""
    text = f"\nThe {display_name} service was stopped successfully.\n\n"
    return NetOutput(text + (f"{note}\n\n" if note else ""), SUCCESS)


def stopping(display_name: str, pending_ticks: int) -> NetOutput:
    """The whole ``net stop`` output for a service that was running."""
    result = stop_result(display_name)
    return NetOutput(stopping_line(display_name) + "." * pending_ticks + result.text, SUCCESS)


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
