"""``popgate deliver``: a delivery agent for MTAs that pipe each message to a command.

It takes the same path as LMTP (MSExchangeDelivery's :class:`Deliverer`), in this process,
and answers with sysexits codes, which Postfix's pipe(8) and Exim's pipe transport read:
0 delivered, 67 unknown recipient (bounce), 75 temporary failure (retry later), 77 over the
mailbox's quota (bounce), 65 no message on standard input.
"""

from __future__ import annotations

import argparse
import os
import sys

from popgate.cli._common import error_console, run, with_directory
from popgate.directory import Directory, DirectoryError
from popgate.home import Home, HomeNotSetUpError
from popgate.services._deliverer import MAX_MESSAGE_SIZE, Deliverer, Outcome
from popgate.store import MaildirStore

__all__ = ["EXIT_CODES", "add_deliver_command"]

EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 65, 67, 75, 77
#: The exit status for each outcome; the worst of several recipients wins (the highest).
EXIT_CODES = {
    Outcome.DELIVERED: os.EX_OK,
    Outcome.UNKNOWN_RECIPIENT: EX_NOUSER,
    Outcome.OVER_QUOTA: EX_NOPERM,
    Outcome.FAILED: EX_TEMPFAIL,
}


def _message(stream: bytes) -> bytes:
    """The message, without the mbox ``From `` line some MTAs put first (pipe's flag F)."""
    if stream.startswith(b"From "):
        return stream.partition(b"\n")[2]
    return stream


async def _deliver(home: Home, recipients: list[str], content: bytes) -> int:
    async def deliver(directory: Directory) -> int:
        server = await directory.get_server(home.server_name)
        if server is None:
            error_console.print(f"popgate deliver: server {home.server_name} is not set up")
            return EX_TEMPFAIL
        deliverer = Deliverer(directory=directory, store=MaildirStore(home.mail_root),
                              server=server)  # fmt: skip
        status = os.EX_OK
        for recipient in recipients:
            delivery = await deliverer.deliver_to(recipient, content)
            if delivery.outcome is not Outcome.DELIVERED:
                what = delivery.outcome.value.replace("_", " ")
                error_console.print(
                    f"popgate deliver: {recipient}: {what}: {delivery.detail}",
                    highlight=False,
                    markup=False,
                )
            status = max(status, EXIT_CODES[delivery.outcome])
        return status

    return await with_directory(home, deliver)


def cmd_deliver(args: argparse.Namespace) -> int:
    """Deliver the message on standard input to each recipient."""
    content = _message(sys.stdin.buffer.read(MAX_MESSAGE_SIZE + 1))
    if not content.strip():
        error_console.print("popgate deliver: no message on standard input")
        return EX_DATAERR
    if len(content) > MAX_MESSAGE_SIZE:
        error_console.print(f"popgate deliver: the message is over {MAX_MESSAGE_SIZE} bytes")
        return EX_NOPERM
    try:
        home = Home.locate()
        home.read_config()
        return run(_deliver(home, args.recipients, content))
    except (HomeNotSetUpError, DirectoryError, OSError) as error:
        # Nothing was lost: the MTA keeps the message and tries again.
        error_console.print(f"popgate deliver: {error}", highlight=False, markup=False)
        return EX_TEMPFAIL


def add_deliver_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``popgate deliver``."""
    deliver = commands.add_parser(
        "deliver",
        help="deliver the message on standard input (for an MTA's pipe transport)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deliver.add_argument(
        "-f",
        "--from",
        dest="sender",
        metavar="SENDER",
        help="the envelope sender (accepted as other delivery agents do; not stored)",
    )
    deliver.add_argument("recipients", nargs="+", metavar="RECIPIENT")
    deliver.set_defaults(handler=cmd_deliver)
