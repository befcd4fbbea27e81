"""Get-, Start-, Stop-, Restart- and Set-Service, and Net, as PowerShell 5.1 runs them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from popgate.host._client import HostClient, HostControlError, ServiceView
from popgate.host._common import (
    ERROR_ACCESS_DENIED,
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DISABLED,
    ERROR_SERVICE_NOT_ACTIVE,
)
from popgate.host._netcmd import NetUsageError, run_net
from popgate.shell._errors import CmdletError
from popgate.shell._language import has_wildcards, wildcard_match
from popgate.shell._objects import PSObject
from popgate.shell._runtime import Cmdlet, Invocation, Kind, Param

__all__ = ["SERVICE_CMDLETS", "service_object"]

COMMANDS = "Microsoft.PowerShell.Commands"
CONTROLLER = "System.ServiceProcess.ServiceController:ServiceController"
STARTUP_TYPES = ("Automatic", "Manual", "Disabled")
PENDING = ("StartPending", "StopPending")
#: PowerShell's name for the local computer.
LOCAL = "."


@dataclass(frozen=True, slots=True)
class Target:
    """One service to act on, the computer it is on, and the client that reaches it."""

    client: HostClient
    view: ServiceView
    machine: str


def service_object(view: ServiceView, machine: str = LOCAL) -> PSObject:
    """A ServiceController: what Get-Service returns, shown as Status, Name, DisplayName."""
    return PSObject(
        "System.ServiceProcess.ServiceController",
        {
            "Status": view["status"],
            "Name": view["name"],
            "DisplayName": view["display_name"],
            "StartType": view["startup_type"],
            "ServiceName": view["name"],
            "MachineName": machine,
            "CanStop": view["status"] == "Running",
            "ServiceType": "Win32OwnProcess",
            "DependentServices": [],
            "ServicesDependedOn": [],
            "Description": view["description"],
        },
        table=("Status", "Name", "DisplayName"),
        widths={"Status": 8, "Name": 18},
    )


def _label(view: ServiceView) -> str:
    return f"'{view['display_name']} ({view['name']})'"


def _not_found(cmdlet: Cmdlet, name: str, *, display: bool) -> CmdletError:
    kind = "display name" if display else "service name"
    return CmdletError(
        message=f"Cannot find any service with {kind} '{name}'.",
        category="ObjectNotFound",
        target=f"{name}:String",
        exception="ServiceCommandException",
        error_id=cmdlet.error_id(
            "NoServiceFoundForGivenDisplayName" if display else "NoServiceFoundForGivenName"
        ),
    )


def _on(invocation: Invocation, machine: str) -> HostClient:
    """The client for ``machine``: this computer's host, or through it another's."""
    return invocation.client.on_server(None if machine in (LOCAL, "localhost") else machine)


def _selected(invocation: Invocation) -> Iterator[Target]:
    """The services named by -Name, -DisplayName or the pipeline, in Get-Service's order,
    on each computer of -ComputerName (or the one a piped service came from).

    A name without wildcards that matches nothing is a non-terminating error; a wildcard
    that matches nothing is silently empty, as in PowerShell.
    """
    computers = invocation.strings("ComputerName") or [LOCAL]
    wanted: list[tuple[str, bool, str]] = []
    for machine in computers:
        wanted += [(name, False, machine) for name in invocation.strings("Name")]
        wanted += [(name, True, machine) for name in invocation.strings("DisplayName")]
    for item in invocation.input:
        if isinstance(item, PSObject):
            wanted.append((str(item.get("Name")), False, str(item.get("MachineName") or LOCAL)))
        elif item is not None:
            wanted += [(str(item), False, machine) for machine in computers]
    if not wanted and not invocation.input:
        wanted = [("*", False, machine) for machine in computers]
    listed: dict[str, list[ServiceView]] = {}
    seen: set[tuple[str, str]] = set()
    for name, by_display, machine in wanted:
        client = _on(invocation, machine)
        if machine not in listed:
            listed[machine] = sorted(client.services(), key=lambda view: view["name"].casefold())
        field = "display_name" if by_display else "name"
        matches = [view for view in listed[machine] if wildcard_match(name, view[field])]
        if not matches and not has_wildcards(name):
            invocation.error(_not_found(invocation.cmdlet, name, display=by_display))
        for view in matches:
            if (machine, view["name"]) not in seen:
                seen.add((machine, view["name"]))
                yield Target(client, view, machine)


def _wait(invocation: Invocation, target: Target, verb: str) -> ServiceView:
    """Poll until the service leaves its pending state, warning every slice as PowerShell."""
    client, view = target.client, target.view
    slice_ends = time.monotonic() + invocation.shell.wait_slice
    while True:
        current = client.service(view["name"])
        if current["status"] not in PENDING:
            return current
        if time.monotonic() >= slice_ends:
            invocation.warn(f"Waiting for service {_label(view)} to {verb}...")
            slice_ends += invocation.shell.wait_slice
        time.sleep(0.05)


def _control_error(
    invocation: Invocation, target: Target, error: HostControlError, verb: str
) -> CmdletError:
    """Start/Stop refused: PowerShell's wording for access denied and disabled."""
    view = target.view
    name = view["name"]
    past = {"start": "started", "stop": "stopped"}[verb]
    if error.code == ERROR_ACCESS_DENIED:
        reason = f"Cannot open {name} service on computer '{target.machine}'."
    elif error.code == ERROR_SERVICE_DISABLED:
        reason = f"Cannot start service {name} on computer '{target.machine}'."
    else:
        reason = str(error)
    return CmdletError(
        message=f"Service {_label(view)} cannot be {past} due to the following error: {reason}",
        category="OpenError" if verb == "start" else "CloseError",
        target=CONTROLLER,
        exception="ServiceCommandException",
        error_id=invocation.cmdlet.error_id(
            "CouldNotStartService" if verb == "start" else "CouldNotStopService"
        ),
    )


def _start(invocation: Invocation, target: Target) -> ServiceView | None:
    """Start one service and wait; the final view, or None after writing an error."""
    client, view = target.client, target.view
    if view["status"] == "Running":
        return view  # ERROR_SERVICE_ALREADY_RUNNING is swallowed, as Start-Service does
    try:
        client.start(view["name"])
    except HostControlError as error:
        if error.code == ERROR_SERVICE_ALREADY_RUNNING:
            return client.service(view["name"])
        invocation.error(_control_error(invocation, target, error, "start"))
        return None
    final = _wait(invocation, target, "start")
    if final["status"] != "Running":
        if final["last_error"]:
            invocation.warn(f"{view['name']}: {final['last_error']}")
        invocation.error(
            CmdletError(
                message=f"Failed to start service {_label(view)}.",
                category="OpenError",
                target=CONTROLLER,
                exception="ServiceCommandException",
                error_id=invocation.cmdlet.error_id("StartServiceFailed"),
            )
        )
        return None
    return final


def _stop(invocation: Invocation, target: Target, *, wait: bool) -> ServiceView | None:
    client, view = target.client, target.view
    if view["status"] == "Stopped":
        return view
    try:
        client.stop(view["name"])
    except HostControlError as error:
        if error.code == ERROR_SERVICE_NOT_ACTIVE:
            return client.service(view["name"])
        invocation.error(_control_error(invocation, target, error, "stop"))
        return None
    if not wait:
        return client.service(view["name"])
    final = _wait(invocation, target, "stop")
    if final["status"] != "Stopped":
        invocation.error(
            CmdletError(
                message=f"Service {_label(view)} stop failed.",
                category="CloseError",
                target=CONTROLLER,
                exception="ServiceCommandException",
                error_id=invocation.cmdlet.error_id("StopServiceFailed"),
            )
        )
        return None
    return final


def get_service(invocation: Invocation) -> Iterable[object]:
    """Get-Service."""
    return [service_object(target.view, target.machine) for target in _selected(invocation)]


def start_service(invocation: Invocation) -> Iterable[object]:
    """Start-Service: silent unless -PassThru."""
    for target in list(_selected(invocation)):
        final = _start(invocation, target)
        if final is not None and invocation.switch("PassThru"):
            yield service_object(final, target.machine)


def stop_service(invocation: Invocation) -> Iterable[object]:
    """Stop-Service (-Force accepted: no popgate service has dependents; -NoWait)."""
    for target in list(_selected(invocation)):
        final = _stop(invocation, target, wait=not invocation.switch("NoWait"))
        if final is not None and invocation.switch("PassThru"):
            yield service_object(final, target.machine)


def restart_service(invocation: Invocation) -> Iterable[object]:
    """Restart-Service: stop (if running), then start."""
    for target in list(_selected(invocation)):
        stopped = _stop(invocation, target, wait=True)
        if stopped is None:
            continue
        final = _start(invocation, Target(target.client, stopped, target.machine))
        if final is not None and invocation.switch("PassThru"):
            yield service_object(final, target.machine)


def set_service(invocation: Invocation) -> Iterable[object]:
    """Set-Service -StartupType."""
    startup_type = invocation.string("StartupType")
    for target in list(_selected(invocation)):
        view = final = target.view
        if startup_type is not None:
            try:
                final = target.client.set_startup_type(view["name"], startup_type)
            except HostControlError as error:
                reason = "Access is denied" if error.access_denied else str(error)
                invocation.error(
                    CmdletError(
                        message=f"Service {_label(view)} cannot be configured due to the "
                        f"following error: {reason}",
                        category="PermissionDenied",
                        target=CONTROLLER,
                        exception="ServiceCommandException",
                        error_id=invocation.cmdlet.error_id("CouldNotSetService"),
                    )
                )
                continue
        if invocation.switch("PassThru"):
            yield service_object(final, target.machine)


def net(invocation: Invocation) -> Iterable[object]:
    """``Net Start NAME`` / ``Net Stop NAME`` inside the shell, with cmd.exe's text."""
    words = invocation.strings("Arguments")
    if not words:
        invocation.shell.io.write("The syntax of this command is:\n\nNET START | STOP\n\n")
        invocation.failed = True
        return []
    try:
        status = run_net(invocation.client, words[0], words[1:], invocation.shell.io.write)
    except NetUsageError as error:
        invocation.shell.io.write(f"{error}\n\n")
        status = 2
    invocation.failed = invocation.failed or status != 0
    return []


def _selection_params(*, pipeline: bool = True) -> tuple[Param, ...]:
    return (
        Param("Name", Kind.STRINGS, position=0, aliases=("ServiceName",), from_pipeline=pipeline,
              help="Key names of the services; wildcards are permitted."),
        Param("DisplayName", Kind.STRINGS, help="Display names; wildcards are permitted."),
        Param("InputObject", Kind.OBJECTS, from_pipeline=True,
              type_name="System.ServiceProcess.ServiceController[]",
              help="ServiceController objects, e.g. from Get-Service."),
    )  # fmt: skip


PASS_THRU = Param("PassThru", Kind.SWITCH, help="Return the service object.")
COMPUTER_NAME = Param(
    "ComputerName",
    Kind.STRINGS,
    aliases=("Cn",),
    help="Servers of the organization to act on, through their hosts; '.' is this one.",
)

SERVICE_CMDLETS: tuple[Cmdlet, ...] = (
    Cmdlet(
        "Get-Service",
        "Gets the services on the computer.",
        (*_selection_params(), COMPUTER_NAME),
        get_service,
        aliases=("gsv",),
        error_class=f"{COMMANDS}.GetServiceCommand",
    ),
    Cmdlet(
        "Start-Service",
        "Starts one or more stopped services.",
        (*_selection_params(), PASS_THRU),
        start_service,
        aliases=("sasv",),
        error_class=f"{COMMANDS}.StartServiceCommand",
    ),
    Cmdlet(
        "Stop-Service",
        "Stops one or more running services.",
        (
            *_selection_params(),
            PASS_THRU,
            Param("Force", Kind.SWITCH, help="Stop services that have dependent services."),
            Param("NoWait", Kind.SWITCH, help="Return without waiting for Stopped."),
        ),
        stop_service,
        aliases=("spsv",),
        error_class=f"{COMMANDS}.StopServiceCommand",
    ),
    Cmdlet(
        "Restart-Service",
        "Stops and then starts one or more services.",
        (
            *_selection_params(),
            PASS_THRU,
            Param("Force", Kind.SWITCH, help="Restart services that have dependent services."),
        ),
        restart_service,
        error_class=f"{COMMANDS}.RestartServiceCommand",
    ),
    Cmdlet(
        "Set-Service",
        "Changes the startup type of a service.",
        (
            *_selection_params(),
            Param(
                "StartupType",
                Kind.ENUM,
                choices=STARTUP_TYPES,
                aliases=("StartMode",),
                type_name="System.ServiceProcess.ServiceStartMode",
                help="Automatic, Manual or Disabled.",
            ),
            PASS_THRU,
            COMPUTER_NAME,
        ),
        set_service,
        error_class=f"{COMMANDS}.SetServiceCommand",
    ),
    Cmdlet(
        "Net",
        "cmd.exe's net start / net stop for the POP3 services.",
        (
            Param(
                "Arguments",
                Kind.STRINGS,
                position=0,
                remaining=True,
                help="START or STOP, then a name.",
            ),
        ),
        net,
    ),
)
