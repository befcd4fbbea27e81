"""Commands that run or talk to the service host: host, up, net, status, service set, log."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.live import Live
from rich.table import Table

from popgate._setup import run_setup
from popgate.cli._common import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    CommandError,
    console,
    run,
    table_console,
)
from popgate.cli._net import SERVER_HELP, add_net_command, local_host, write_now
from popgate.home import Home, HomeNotSetUpError
from popgate.host import ServiceControlError, ServiceState
from popgate.host._client import HostClient, HostControlError, ServiceView
from popgate.host._common import (
    DEFAULT_HTTPS_BINDING,
    HostError,
    control_socket_path,
    parse_https_binding,
)
from popgate.host._recovery import RecoveryAction
from popgate.services import BACKEND, DELIVERY, FRONTEND
from popgate.services._logformat import configured_log_format, stderr_handler

if TYPE_CHECKING:
    from popgate.host._daemon import RunningHost

__all__ = [
    "add_host_commands",
    "add_service_set",
    "add_shell_command",
    "https_option",
    "systemd_unit",
]

#: Where install-systemd writes the unit by default.
SYSTEMD_UNIT = Path("/etc/systemd/system/popgate.service")


def https_option(value: str) -> str:
    """An ``address:port`` binding, or ``off`` (kept as the empty string)."""
    if value.lower() in ("off", "none", ""):
        return ""
    try:
        parse_https_binding(value)
    except HostError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _https_binding(home: Home, given: str | None) -> str | None:
    """This run's HTTPS binding: the option, else the one setup stored, else the default."""
    binding = given if given is not None else home.read_config().get("admin_https")
    if binding is None:
        return DEFAULT_HTTPS_BINDING
    return binding or None


def _log_to_stderr(level: int) -> None:
    log_format = configured_log_format(Home.locate())
    handler = stderr_handler(log_format, "%(asctime)s %(levelname)s %(message)s")
    handler.setLevel(level)
    logging.getLogger("popgate").addHandler(handler)


# -- popgate host / up -------------------------------------------------------------------


def cmd_host(args: argparse.Namespace) -> int:
    """Run the service host in the foreground (systemd runs this; see install-systemd)."""
    from popgate.host._daemon import run_host  # the server side loads only here

    _log_to_stderr(logging.INFO)
    home = Home.locate()
    run(run_host(home, https_binding=_https_binding(home, args.https)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Set up if needed, run the host, start MSExchangePOP3BE then MSExchangePOP3."""
    from popgate.host._daemon import run_host  # the server side loads only here

    home = Home.locate()
    setup = run(run_setup(home))
    if setup.created:
        console.print(f"Set up popgate in {home.root} (server {setup.server}).", highlight=False)
    _log_to_stderr(logging.WARNING)
    actor = getpass.getuser()

    async def when_up(running: RunningHost) -> None:
        wanted = [s for s in (BACKEND, FRONTEND) if s.name in running.host.processes]
        for service in wanted:
            try:
                process = await running.host.start(service.name)
            except ServiceControlError:
                process = running.host.processes[service.name]  # Automatic: already started
            result = "Success" if process.current_state() is ServiceState.RUNNING else "Failed"
            await running.directory.audit(
                actor=actor,
                origin=f"local (pid {os.getpid()}, popgate up)",
                action="Start-Service",
                target=service.name,
                result=result,
                detail=process.last_error or process.current_state().label,
            )
        settings = await running.directory.get_pop_settings(running.server_name, effective=True)
        fqdn = home.read_config().get("fqdn", running.server_name)
        lines = [f"popgate is up on {running.server_name} ({fqdn}):"]
        for service in wanted:
            process = running.host.processes[service.name]
            state = process.current_state().label
            lines.append(f"  {service.name:<18} {service.display_name:<33} {state}")
            if process.last_error:
                lines.append(f"    could not start: {process.last_error}")
        if (delivery := running.host.processes.get(DELIVERY.name)) is not None:
            # Automatic: the host has started it already.
            state = delivery.current_state().label
            lines.append(f"  {DELIVERY.name:<18} {DELIVERY.display_name:<33} {state}")
            if delivery.last_error:
                lines.append(f"    could not start: {delivery.last_error}")
            binding = home.lmtp_binding()
            tcp = f"{binding} and " if binding else ""
            lines.append(f"Mail in: LMTP on {tcp}{home.lmtp_socket}, or 'popgate deliver'")
        if FRONTEND.name in running.host.processes:
            plain = ", ".join(settings.unencrypted_or_tls_bindings)
            implicit = ", ".join(settings.ssl_bindings)
            lines.append(f"POP3 clients connect to {fqdn}: {plain} (STLS), {implicit} (TLS)")
        if running.https_url:
            lines.append(f"Admin center: {running.https_url}ecp/ (sign in as Administrator)")
            lines.append(f"Control API: {running.https_url}api/v1/")
        lines.append(f"Local control: {running.control_socket} (popgate net, popgate status)")
        lines.append(f"Administrator password: {home.administrator_password_file}")
        lines.append("Press Ctrl-C to stop the services and the host.")
        console.print("\n".join(lines), highlight=False, markup=False)

    run(run_host(home, https_binding=_https_binding(home, args.https), when_up=when_up))
    console.print("popgate stopped.", highlight=False)
    return 0


# -- popgate status ------------------------------------------------------------------------


def _status_table(services: list[ServiceView]) -> Table:
    """Task Manager's Services tab: Name, PID, Description, Status, Group."""
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("Name", "PID", "Description", "Status", "Group"):
        # A narrow terminal folds the description, never a name or a state.
        table.add_column(column, no_wrap=column != "Description")
    for service in services:
        pid = str(service["pid"]) if service["pid"] else ""
        table.add_row(
            service["name"], pid, service["display_name"], service["status"], service["role"]
        )
    return table


def _status_view(client: HostClient) -> Table:
    services = client.services()
    table = _status_table(services)
    problems = [s for s in services if s["last_error"]]
    if problems:
        notes = "\n".join(f"{s['name']}: {s['last_error']}" for s in problems)
        table.caption = notes
        table.caption_justify = "left"
    return table


def cmd_status(args: argparse.Namespace) -> int:
    """The services of this computer and their state (``--watch`` refreshes it)."""
    with local_host() as local:
        client = local.on_server(args.server)
        try:
            if not args.watch:
                # Piped to a script, every row stays on one line, however long.
                table_console().print(_status_view(client), highlight=False)
                return 0
            with Live(_status_view(client), console=console, auto_refresh=False) as live:
                try:
                    while True:
                        time.sleep(args.interval)
                        live.update(_status_view(client), refresh=True)
                except KeyboardInterrupt:
                    return 0
        except HostControlError as error:
            raise CommandError(str(error), RUNTIME_ERROR) from None


# -- popgate service set / popgate log -----------------------------------------------------


def _recovery_actions(text: str) -> list[tuple[str, float]]:
    """``restart/5,restart/10,none``: first, second and subsequent failures."""
    actions: list[tuple[str, float]] = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        action, _, delay = part.partition("/")
        try:
            kind = RecoveryAction(action.strip().lower())
            seconds = float(delay) if delay else 0.0
        except ValueError:
            raise CommandError(
                f"{part!r} is not a recovery action; use restart/SECONDS or none, "
                "e.g. restart/5,restart/10,none"
            ) from None
        actions.append((kind.value, seconds))
    if len(actions) > 3:
        raise CommandError("give at most three actions: first, second and subsequent failures")
    return actions


def cmd_service_set(args: argparse.Namespace) -> int:
    """Set-Service: the startup type and the recovery options of a service."""
    if args.startup_type is None and args.recovery is None and args.reset_after is None:
        raise CommandError("nothing to change; give --startup-type and/or --recovery")
    with local_host() as client:
        try:
            view = client.service(args.name)
            if args.startup_type is not None:
                view = client.set_startup_type(args.name, args.startup_type)
            if args.recovery is not None or args.reset_after is not None:
                current = view["recovery"]
                actions = (
                    _recovery_actions(args.recovery)
                    if args.recovery is not None
                    else [(a["action"], a["delay"]) for a in current["actions"]]
                )
                reset = args.reset_after if args.reset_after is not None else current["reset_after"]
                view = client.set_recovery(args.name, actions, reset)
        except HostControlError as error:
            if error.access_denied:
                raise CommandError("Access is denied.", USAGE_ERROR) from None
            raise CommandError(str(error)) from None
    recovery = ", ".join(f"{a['action']}/{a['delay']:g}s" for a in view["recovery"]["actions"])
    console.print(
        f"{view['name']}: startup type {view['startup_type']}; recovery {recovery or 'none'}, "
        f"failure count reset after {view['recovery']['reset_after']:g} s",
        highlight=False,
        markup=False,
    )
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    """The last lines of the service host's log."""
    with local_host() as client:
        try:
            lines = client.log(args.lines)
        except HostControlError as error:
            raise CommandError(str(error), RUNTIME_ERROR) from None
    for line in lines:
        console.print(line, highlight=False, markup=False)
    return 0


# -- popgate mailbox move ------------------------------------------------------------------

#: Where a move ends.
MOVE_ENDED = ("Completed", "Failed")


def cmd_mailbox_move(args: argparse.Namespace) -> int:
    """Move a mailbox to another Mailbox server (New-MoveRequest), and follow it."""
    with local_host() as client:
        try:
            if args.cancel:
                view = client.remove_move_request(args.name)
                console.print(f"Cancelled the move of {view['identity']} ({view['status']}).")
                return 0
            if args.resume:
                view = client.resume_move_request(args.name)
            elif args.to:
                view = client.new_move_request(args.name, args.to)
            else:
                view = client.move_request(args.name)
            return _follow_move(client, view, wait=not args.no_wait)
        except HostControlError as error:
            raise CommandError(str(error), RUNTIME_ERROR) from None


def _follow_move(client: HostClient, view: dict[str, object], *, wait: bool) -> int:
    """Print each new state of the move until it ends (or once without ``wait``)."""
    identity = str(view["identity"])
    last = None
    while True:
        shown = (view["status"], view["detail"])
        if shown != last:
            console.print(
                f"{identity}: {view['source_server']} -> {view['target_server']}: "
                f"{view['status']}: {view['detail']}",
                highlight=False,
                markup=False,
            )
            last = shown
        if view["status"] in MOVE_ENDED or not wait:
            return 0 if view["status"] != "Failed" else RUNTIME_ERROR
        time.sleep(0.5)
        view = client.move_request(identity)


def cmd_mailbox_moves(args: argparse.Namespace) -> int:
    """Every mailbox move and where it stands (Get-MoveRequest)."""
    del args
    with local_host() as client:
        try:
            moves = client.move_requests()
        except HostControlError as error:
            raise CommandError(str(error), RUNTIME_ERROR) from None
    table = Table("Mailbox", "Status", "From", "To", "Detail")
    for move in moves:
        table.add_row(
            str(move["identity"]),
            str(move["status"]),
            str(move["source_server"]),
            str(move["target_server"]),
            str(move["detail"]),
        )
    table_console().print(table, highlight=False)
    return 0


def add_move_commands(
    mailbox_commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register ``mailbox move`` and ``mailbox moves``."""
    move = mailbox_commands.add_parser(
        "move",
        help="move a mailbox to another Mailbox server, keeping its UIDLs (New-MoveRequest)",
    )
    move.add_argument("name")
    what = move.add_mutually_exclusive_group()
    what.add_argument("--to", metavar="SERVER", help="the Mailbox server to move it to")
    what.add_argument("--resume", action="store_true", help="take an interrupted move up again")
    what.add_argument("--cancel", action="store_true", help="cancel it before it switches")
    move.add_argument(
        "--no-wait", action="store_true", help="return at once instead of following the move"
    )
    move.set_defaults(handler=cmd_mailbox_move)
    moves = mailbox_commands.add_parser("moves", help="every mailbox move (Get-MoveRequest)")
    moves.set_defaults(handler=cmd_mailbox_moves)


# -- popgate install-systemd ---------------------------------------------------------------


def systemd_unit(home: Path, user: str | None) -> str:
    """A systemd unit that runs the host with sd_notify readiness."""
    service_user = (
        f"User={user}\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
        if user
        else ""
    )
    return (
        "[Unit]\n"
        "Description=popgate service host (Microsoft Exchange POP3 services)\n"
        "Documentation=man:popgate(1)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        "NotifyAccess=main\n"
        f"Environment=POPGATE_HOME={home}\n"
        f"ExecStart={sys.executable} -m popgate.cli host\n"
        f"{service_user}"
        # The host stops each service gracefully (GracefulStopTimeout) before it exits.
        "KillMode=mixed\n"
        "TimeoutStopSec=300\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def cmd_install_systemd(args: argparse.Namespace) -> int:
    """Write a systemd unit for ``popgate host``."""
    home = Home.locate()
    home.read_config()  # the unit is for a set-up computer
    unit = systemd_unit(home.root, args.user)
    if args.output == "-":
        sys.stdout.write(unit)
        return 0
    target = Path(args.output) if args.output else SYSTEMD_UNIT
    try:
        target.write_text(unit, encoding="utf-8")
        target.chmod(0o644)
    except PermissionError:
        raise CommandError(
            f"cannot write {target}: permission denied; run as root or use --output PATH",
            RUNTIME_ERROR,
        ) from None
    console.print(f"Wrote {target}.", highlight=False)
    console.print(
        "Enable it with: systemctl daemon-reload && systemctl enable --now popgate",
        highlight=False,
    )
    return 0


# -- the grammar ---------------------------------------------------------------------------


def add_host_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register host, up, net, status, log and install-systemd."""
    https_help = (
        "HTTPS address:port of the control API and admin center for this run, or off "
        f"(default: what 'popgate setup --https' stored, else {DEFAULT_HTTPS_BINDING})"
    )
    up = commands.add_parser(
        "up", help="set up if needed, run the host and start both POP3 services"
    )
    up.add_argument("--https", type=https_option, help=https_help)
    up.set_defaults(handler=cmd_up)

    host = commands.add_parser("host", help="run the service host in the foreground")
    host.add_argument("--https", type=https_option, help=https_help)
    host.set_defaults(handler=cmd_host)

    add_net_command(commands)

    status = commands.add_parser("status", help="the services of this computer and their state")
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument("--server", help=SERVER_HELP)
    status.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    status.set_defaults(handler=cmd_status)

    log = commands.add_parser("log", help="the last lines of the service host's log")
    log.add_argument("--lines", type=int, default=50)
    log.set_defaults(handler=cmd_log)

    systemd = commands.add_parser(
        "install-systemd", help="write a systemd unit that runs 'popgate host'"
    )
    systemd.add_argument("--output", help=f"where to write it (default {SYSTEMD_UNIT}; - prints)")
    systemd.add_argument("--user", help="run the host as this user (with CAP_NET_BIND_SERVICE)")
    systemd.set_defaults(handler=cmd_install_systemd)


def add_service_set(service_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``popgate service set``."""
    service_set = service_commands.add_parser(
        "set", help="startup type and recovery options (Set-Service)"
    )
    service_set.add_argument("name")
    service_set.add_argument(
        "--startup-type", type=str.capitalize, choices=["Automatic", "Manual", "Disabled"]
    )
    service_set.add_argument(
        "--recovery", metavar="ACTIONS", help="first,second,subsequent: restart/SECONDS or none"
    )
    service_set.add_argument("--reset-after", type=float, metavar="SECONDS")
    service_set.set_defaults(handler=cmd_service_set)


# -- popgate shell -------------------------------------------------------------------------


def cmd_shell(args: argparse.Namespace) -> int:
    """The management shell: interactive, or -c COMMANDS, or -f SCRIPT."""
    # The shell (prompt_toolkit) loads only for this command.
    from popgate.shell import ShellIO, interactive, make_shell, run_script

    home = Home.locate()

    def connect() -> HostClient:
        return HostClient.local(control_socket_path(home))

    if args.command_text is None and args.file is None:
        try:
            name = home.server_name
        except HomeNotSetUpError:
            name = "popgate"
        return 0 if interactive(connect, name) else 1
    if args.file is not None:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except OSError as error:
            raise CommandError(f"cannot read {args.file}: {error.strerror}") from None
    else:
        text = args.command_text
    shell = make_shell(ShellIO(write=write_now), connect)
    try:
        return 0 if run_script(shell, text) else 1
    finally:
        shell.close()


def add_shell_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``popgate shell``."""
    shell = commands.add_parser(
        "shell", help="the management shell (Get-Service, Set-PopSettings, New-Mailbox, ...)"
    )
    source = shell.add_mutually_exclusive_group()
    source.add_argument("-c", dest="command_text", metavar="COMMANDS", help="run and exit")
    source.add_argument("-f", dest="file", metavar="SCRIPT", help="run a script file and exit")
    shell.set_defaults(handler=cmd_shell)
