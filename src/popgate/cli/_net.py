"""``popgate net start|stop [NAME]``: cmd.exe's net for this computer's services.

Imports only the host's client, so that the command an administrator waits on starts in a
fraction of the time the rest of the command line takes to import.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from popgate.cli._errors import RUNTIME_ERROR, CommandError, fail
from popgate.home import Home, HomeNotSetUpError
from popgate.host._client import HostClient, HostControlError, HostNotRunningError
from popgate.host._common import HostError, control_socket_path
from popgate.host._netcmd import NetUsageError, run_net

__all__ = ["NOT_RUNNING", "SERVER_HELP", "add_net_command", "local_host", "main", "write_now"]

NOT_RUNNING = (
    "the popgate service host is not running on this computer; "
    "start it with 'popgate up' (or 'popgate host')"
)
SERVER_HELP = (
    "another server of the organization, through its host (as sc \\\\MBX1); default: this computer"
)


@contextmanager
def local_host() -> Iterator[HostClient]:
    """The control API of this computer's host; a one-line error when it is not running."""
    client = HostClient.local(control_socket_path(Home.locate()))
    try:
        yield client
    except HostNotRunningError:
        raise CommandError(NOT_RUNNING, RUNTIME_ERROR) from None
    finally:
        client.close()


def write_now(text: str) -> None:
    """Write to stdout at once, as net.exe's progress dots appear while a service starts."""
    sys.stdout.write(text)
    sys.stdout.flush()


def cmd_net(args: argparse.Namespace) -> int:
    """``net start|stop [NAME]`` for this computer's services, with cmd.exe's messages."""
    with local_host() as client:
        try:
            return run_net(client.on_server(args.server), args.verb, args.name, write_now)
        except NetUsageError as error:
            raise CommandError(str(error)) from None
        except HostControlError as error:
            raise CommandError(str(error), RUNTIME_ERROR) from None


def add_net_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``net`` to the command line's subcommands."""
    net_parser = commands.add_parser("net", help="net start / net stop, as in cmd.exe")
    net_parser.add_argument("verb", type=str.lower, choices=["start", "stop"])
    net_parser.add_argument("name", nargs="*", help="key name or display name, any case")
    net_parser.add_argument("--server", help=SERVER_HELP)
    net_parser.set_defaults(handler=cmd_net)


def main(argv: Sequence[str]) -> int:
    """``popgate net ...`` on its own: the same parser, messages and exit statuses as the
    whole command line gives it."""
    os.umask(0o077)  # as every popgate command (see popgate.cli._commands.main)
    parser = argparse.ArgumentParser(prog="popgate")
    add_net_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        status: int = cmd_net(args)
    except CommandError as error:
        fail(str(error), error.status)
    except (HomeNotSetUpError, HostError) as error:
        fail(str(error), RUNTIME_ERROR)
    except KeyboardInterrupt:
        return 130
    return status
