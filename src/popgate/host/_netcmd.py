"""``net start`` / ``net stop`` against a host: used by ``popgate net`` and the shell's Net."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from popgate.host import _net as net
from popgate.host._client import HostClient, HostControlError
from popgate.host._common import (
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DISABLED,
    ERROR_SERVICE_DOES_NOT_EXIST,
    ERROR_SERVICE_NOT_ACTIVE,
)
from popgate.host._states import ServiceState

__all__ = ["NetUsageError", "run_net"]

Write = Callable[[str], None]

#: net.exe's answers to the dependent-services prompt. No popgate service has dependents,
#: so there is never a question to answer; the words are accepted and ignored.
PROMPT_ANSWERS = ("/y", "/yes", "/n", "/no")


class NetUsageError(Exception):
    """The command line is not a net command we can run."""


def _refusal(error: HostControlError) -> net.NetOutput:
    if error.access_denied:
        return net.access_denied()
    if error.code == ERROR_SERVICE_DOES_NOT_EXIST:
        return net.invalid_name()
    if error.code == ERROR_SERVICE_DISABLED:
        return net.disabled()
    raise error


def _emit(write: Write, output: net.NetOutput) -> int:
    write(output.text)
    return output.status


def _start(client: HostClient, name: str, write: Write) -> int:
    # The control goes first, as net.exe opens the service for start access: the host
    # sees (and audits) a caller without the right, whatever the service's state.
    try:
        view = client.start(name)
    except HostControlError as error:
        if error.code == ERROR_SERVICE_ALREADY_RUNNING:
            return _emit(write, net.already_started())
        return _emit(write, _refusal(error))
    display = view["display_name"]
    write(net.starting_line(display))
    final = client.wait_while_pending(name, on_tick=lambda: write("."))
    ok = final["status"] == ServiceState.RUNNING.label
    reason = None if ok else (final["last_error"] or "The service did not report an error.")
    return _emit(write, net.start_result(display, reason))


def _stop(client: HostClient, name: str, write: Write) -> int:
    try:
        view = client.stop(name)
    except HostControlError as error:
        if error.code == ERROR_SERVICE_NOT_ACTIVE:
            return _emit(write, net.not_started(client.service(name)["display_name"]))
        return _emit(write, _refusal(error))
    display = view["display_name"]
    write(net.stopping_line(display))
    final = client.wait_while_pending(name, on_tick=lambda: write("."))
    return _emit(write, net.stop_result(display, final["last_error"]))


def run_net(client: HostClient, verb: str, words: Sequence[str], write: Write) -> int:
    """Run ``net VERB [NAME...]``, writing net.exe's text; its exit status (0 or 2).

    Errors other than net's own (a host that fails) propagate as HostControlError.
    """
    kept = [word for word in words if word.lower() not in PROMPT_ANSWERS]
    name = " ".join(kept).strip()
    verb = verb.lower()
    if verb not in ("start", "stop"):
        raise NetUsageError(f"net {verb} is not supported; use net start or net stop")
    if verb == "start" and not name:
        try:
            services = client.services()
        except HostControlError as error:
            return _emit(write, _refusal(error))
        started = [s["display_name"] for s in services if s["status"] == "Running"]
        return _emit(write, net.started_list(started))
    if not name:
        raise NetUsageError("name the service to stop, e.g. net stop MSExchangePOP3")
    return _start(client, name, write) if verb == "start" else _stop(client, name, write)
