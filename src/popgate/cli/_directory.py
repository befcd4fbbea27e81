"""``popgate directory``: where this computer's directory lives, and moving it.

``popgate directory show`` prints the database (never its password); ``popgate directory
migrate --to postgresql+asyncpg://...`` copies a single computer's SQLite directory into an
empty PostgreSQL database that the other computers of the organization can reach, then points
this computer at it. The service host must be stopped, so that nothing is written to the old
directory after the copy.
"""

from __future__ import annotations

import argparse

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from popgate.cli._common import RUNTIME_ERROR, CommandError, console, run
from popgate.directory import Directory
from popgate.home import Home
from popgate.host._client import HostClient, HostNotRunningError
from popgate.host._common import control_socket_path

__all__ = ["add_directory_commands", "shown_url"]


def shown_url(url: str) -> str:
    """A database URL fit to print: its password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def _host_running(home: Home) -> bool:
    try:
        with HostClient.local(control_socket_path(home), timeout=5) as client:
            client.whoami()
    except HostNotRunningError:
        return False
    return True


async def _migrate(source_url: str, target_url: str) -> dict[str, int]:
    async with (
        await Directory.connect(source_url) as source,
        await Directory.connect(target_url) as target,
    ):
        await source.upgrade()
        await target.upgrade()
        return await source.copy_to(target)


def cmd_directory_migrate(args: argparse.Namespace) -> int:
    """Copy the directory into an empty database, then use that one."""
    home = Home.locate()
    source_url = home.directory_url
    if source_url == args.to:
        raise CommandError("the directory is there already")
    if _host_running(home):
        raise CommandError(
            "the service host is running; stop it first (Ctrl-C 'popgate up', or "
            "'systemctl stop popgate'), so that nothing changes the directory during the copy",
            RUNTIME_ERROR,
        )
    copied = run(_migrate(source_url, args.to))
    home.write_config({**home.read_config(), "directory_url": args.to})
    console.print(f"Copied the directory to {shown_url(args.to)}:", highlight=False)
    for table, count in copied.items():
        console.print(f"  {table:<20} {count:>8} rows", highlight=False)
    console.print(
        f"This computer now uses it; the old directory ({shown_url(source_url)}) is kept, "
        "unused. Join other computers with 'popgate setup --directory URL'.",
        highlight=False,
    )
    return 0


def cmd_directory_show(args: argparse.Namespace) -> int:
    """Where the directory is."""
    del args
    console.print(shown_url(Home.locate().directory_url), highlight=False, markup=False)
    return 0


def add_directory_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``popgate directory show|migrate``."""
    directory = commands.add_parser(
        "directory",
        help="where the directory lives; move it to PostgreSQL",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = directory.add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the directory's database URL")
    show.set_defaults(handler=cmd_directory_show)
    migrate = actions.add_parser(
        "migrate", help="copy the directory into an empty database and use that one"
    )
    migrate.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the target, e.g. postgresql+asyncpg://popgate:PASSWORD@db.example.com/popgate",
    )
    migrate.set_defaults(handler=cmd_directory_migrate)
