"""``popgate test-connectivity``: Test-PopConnectivity from the command line, for monitoring.

The same implementation as the shell's cmdlet and the control API
(:func:`popgate.host._connectivity.test_pop_connectivity`), run in this process against
this computer's directory. Exit status 0 on Success, 1 on Failure or Skipped, so that a
monitoring system can call it as a check.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.table import Table

from popgate.cli._common import CommandError, run, table_console, with_directory
from popgate.directory import Directory
from popgate.home import Home
from popgate.host._connectivity import (
    SUCCESS,
    ConnectionType,
    ConnectivityResult,
    new_test_user,
    test_pop_connectivity,
)

__all__ = ["add_test_connectivity_command", "create_test_user"]


async def _test(home: Home, args: argparse.Namespace, password: str | None) -> ConnectivityResult:
    async def test(directory: Directory) -> ConnectivityResult:
        return await test_pop_connectivity(
            home,
            directory,
            client_access_server=args.client_access_server,
            mailbox_credential=None if password is None else (args.mailbox, password),
            connection_type=ConnectionType(args.connection_type),
            port=args.port,
            light_mode=args.light_mode,
            per_connection_timeout=args.per_connection_timeout,
            timeout=args.timeout,
            trust_any_ssl_certificate=args.trust_any_ssl_certificate,
            reset_test_account_credentials=args.reset_test_account_credentials,
        )

    return await with_directory(home, test)


def cmd_test_connectivity(args: argparse.Namespace) -> int:
    """Log on through a front end and (unless --light-mode) deliver, find and delete a test
    message; print CasServer, LocalSite, Scenario, Result, Latency(MS), Error."""
    password = None
    if args.mailbox:
        if not args.password_stdin:
            raise CommandError("--mailbox needs its password on standard input: --password-stdin")
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        result = run(_test(Home.locate(), args, password))
    except ValueError as error:
        raise CommandError(str(error)) from None
    fields = result.exchange_fields()
    if args.json:
        sys.stdout.write(json.dumps(fields) + "\n")
    else:
        table = Table(box=None, pad_edge=False, show_edge=False)
        for name in fields:
            table.add_column(name, overflow="fold")
        table.add_row(*("" if value is None else f"{value:g}" if isinstance(value, float)
                        else str(value) for value in fields.values()))  # fmt: skip
        table_console().print(table, highlight=False)
    return 0 if result.result == SUCCESS else 1


async def create_test_user(home: Home, *, reset: bool = False) -> str:
    """New-TestCasConnectivityUser: the test mailbox's name (created or reset)."""
    mailbox = await with_directory(home, lambda d: new_test_user(home, d, reset=reset))
    return mailbox.name


def add_test_connectivity_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register ``popgate test-connectivity``."""
    test = commands.add_parser(
        "test-connectivity",
        help="Test-PopConnectivity: log on through a front end, deliver and retrieve a message",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument(
        "client_access_server", nargs="?", metavar="SERVER",
        help="the Client Access server to test (default: this computer)",
    )  # fmt: skip
    test.add_argument(
        "--connection-type",
        choices=[kind.value for kind in ConnectionType],
        type=lambda text: ConnectionType(text).value,
        default=ConnectionType.SSL.value,
        help="Ssl (implicit TLS, the default), Tls (STLS) or Plaintext",
    )
    test.add_argument("--port", type=int, help="PortClientAccessServer (default: the binding)")
    test.add_argument("--light-mode", action="store_true", help="test the logon only")
    test.add_argument(
        "--mailbox", help="log on as this mailbox (default: the test mailbox extest_<server>)"
    )
    test.add_argument(
        "--password-stdin", action="store_true", help="read --mailbox's password from stdin"
    )
    test.add_argument("--per-connection-timeout", type=float, default=120.0, metavar="SECONDS")
    test.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS")
    test.add_argument(
        "--trust-any-ssl-certificate",
        action="store_true",
        help="accept a certificate that does not verify (a self-signed one)",
    )
    test.add_argument(
        "--reset-test-account-credentials",
        action="store_true",
        help="give the test mailbox a new password first",
    )
    test.add_argument("--json", action="store_true", help="print the result as one JSON object")
    test.set_defaults(handler=cmd_test_connectivity)
