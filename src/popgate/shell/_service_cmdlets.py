"""Get-, Start-, Stop-, Restart- and Set-Service, and Net, as PowerShell 5.1 runs them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from popgate.host._client import HostControlError, ServiceView
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


def service_object(view: ServiceView) -> PSObject:
    """A ServiceController: what Get-Service returns, shown as Status, Name, DisplayName."""
    return PSObject(
        "System.ServiceProcess.ServiceController",
        {
            "Status": view["status"],
            "Name": view["name"],
            "DisplayName": view["display_name"],
            "StartType": view["startup_type"],
            "ServiceName": view["name"],
            "MachineName": ".",
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


def _selected(invocation: Invocation) -> Iterator[ServiceView]:
    """The services named by -Name, -DisplayName or the pipeline, in Get-Service's order.

    A name without wildcards that matches nothing is a non-terminating error; a wildcard
    that matches nothing is silently empty, as in PowerShell.
    """
    services = sorted(invocation.client.services(), key=lambda view: view["name"].casefold())
    piped = [item for item in invocation.input if item is not None]
    wanted: list[tuple[str, bool]] = [(name, False) for name in invocation.strings("Name")]
    wanted += [(name, True) for name in invocation.strings("DisplayName")]
    for item in piped:
        name = item.get("Name") if isinstance(item, PSObject) else item
        wanted.append((str(name), False))
    if not wanted and not invocation.input:
        wanted = [("*", False)]
    seen: set[str] = set()
    for name, by_display in wanted:
        field = "display_name" if by_display else "name"
        matches = [view for view in services if wildcard_match(name, view[field])]
        if not matches and not has_wildcards(name):
            invocation.error(_not_found(invocation.cmdlet, name, display=by_display))
        for view in matches:
            if view["name"] not in seen:
                seen.add(view["name"])
                yield view


def _wait(invocation: Invocation, view: ServiceView, verb: str) -> ServiceView:
    """Poll until the service leaves its pending state, warning every slice as PowerShell."""
    client = invocation.client
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
    invocation: Invocation, view: ServiceView, error: HostControlError, verb: str
) -> CmdletError:
    """Start/Stop refused: PowerShell's wording for access denied and disabled."""
    name = view["name"]
    past = {"start": "started", "stop": "stopped"}[verb]
    if error.code == ERROR_ACCESS_DENIED:
        reason = f"Cannot open {name} service on computer '.'."
    elif error.code == ERROR_SERVICE_DISABLED:
        reason = f"Cannot start service {name} on computer '.'."
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


def _start(invocation: Invocation, view: ServiceView) -> ServiceView | None:
    """Start one service and wait; the final view, or None after writing an error."""
    if view["status"] == "Running":
        return view  # ERROR_SERVICE_ALREADY_RUNNING is swallowed, as Start-Service does
    try:
        invocation.client.start(view["name"])
    except HostControlError as error:
        if error.code == ERROR_SERVICE_ALREADY_RUNNING:
            return invocation.client.service(view["name"])
        invocation.error(_control_error(invocation, view, error, "start"))
        return None
    final = _wait(invocation, view, "start")
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


def _stop(invocation: Invocation, view: ServiceView, *, wait: bool) -> ServiceView | None:
    if view["status"] == "Stopped":
        return view
    try:
        invocation.client.stop(view["name"])
    except HostControlError as error:
        if error.code == ERROR_SERVICE_NOT_ACTIVE:
            return invocation.client.service(view["name"])
        invocation.error(_control_error(invocation, view, error, "stop"))
        return None
    if not wait:
        return invocation.client.service(view["name"])
    final = _wait(invocation, view, "stop")
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
    return [service_object(view) for view in _selected(invocation)]


def start_service(invocation: Invocation) -> Iterable[object]:
    """Start-Service: silent unless -PassThru."""
    for view in list(_selected(invocation)):
        final = _start(invocation, view)
        if final is not None and invocation.switch("PassThru"):
            yield service_object(final)


def stop_service(invocation: Invocation) -> Iterable[object]:
    """Stop-Service (-Force accepted: no popgate service has dependents; -NoWait)."""
    for view in list(_selected(invocation)):
        final = _stop(invocation, view, wait=not invocation.switch("NoWait"))
        if final is not None and invocation.switch("PassThru"):
            yield service_object(final)


def restart_service(invocation: Invocation) -> Iterable[object]:
    """Restart-Service: stop (if running), then start."""
    for view in list(_selected(invocation)):
        stopped = _stop(invocation, view, wait=True)
        if stopped is None:
            continue
        final = _start(invocation, stopped)
        if final is not None and invocation.switch("PassThru"):
            yield service_object(final)


def set_service(invocation: Invocation) -> Iterable[object]:
    """Set-Service -StartupType."""
    startup_type = invocation.string("StartupType")
    for view in list(_selected(invocation)):
        final = view
        if startup_type is not None:
            try:
                final = invocation.client.set_startup_type(view["name"], startup_type)
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
            yield service_object(final)


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

SERVICE_CMDLETS: tuple[Cmdlet, ...] = (
    Cmdlet(
        "Get-Service",
        "Gets the services on the computer.",
        _selection_params(),
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
