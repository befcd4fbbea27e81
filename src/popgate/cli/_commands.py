"""The ``popgate`` command: setup, mailboxes, settings and running services."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.progress import Progress
from rich.table import Table

from popgate._setup import run_setup, write_secret
from popgate.cli._common import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    CommandError,
    console,
    error_console,
    run,
    with_directory,
)
from popgate.cli._connectivity import add_test_connectivity_command, create_test_user
from popgate.cli._deliver import add_deliver_command
from popgate.cli._directory import add_directory_commands
from popgate.cli._errors import fail
from popgate.cli._host import (
    add_host_commands,
    add_move_commands,
    add_service_set,
    add_shell_command,
    https_option,
)
from popgate.directory import (
    Directory,
    DirectoryError,
    Mailbox,
    PopSettings,
    Role,
    format_setting,
    format_size,
    parse_bool,
    parse_size,
    settings_without_effect,
    validate_domain,
)
from popgate.home import Home, HomeNotSetUpError
from popgate.host._common import HostError
from popgate.net import TlsConfigError, server_context
from popgate.services import find_service
from popgate.services._logformat import LOG_FORMATS, configured_log_format, stderr_handler
from popgate.services._runner import ServiceStartError, run_service
from popgate.store import (
    MaildirStore,
    StoreError,
    eml_messages,
    import_messages,
    maildir_count,
    maildir_messages,
    mbox_messages,
)

__all__ = ["main"]


async def _require_mailbox(directory: Directory, name: str) -> Mailbox:
    mailbox = await directory.get_mailbox(name)
    if mailbox is None:
        raise CommandError(f"there is no mailbox {name!r}; see 'popgate mailbox list'")
    return mailbox


def _read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CommandError("the two passwords differ; nothing was changed")
    else:
        raise CommandError("no terminal to ask for the password; use --password-stdin")
    if not password:
        raise CommandError("the password is empty; nothing was changed")
    return password


# -- setup ---------------------------------------------------------------------------------


def _parse_roles(text: str) -> set[Role]:
    roles: set[Role] = set()
    by_name = {role.value.casefold(): role for role in Role}
    for part in text.split(","):
        role = by_name.get(part.strip().casefold())
        if role is None:
            choices = ", ".join(role.value for role in Role)
            raise CommandError(f"unknown role {part.strip()!r}; choose from {choices}")
        roles.add(role)
    return roles


def cmd_setup(args: argparse.Namespace) -> int:
    """Create popgate's data directory, certificate, directory and Administrator account."""
    roles = _parse_roles(args.roles) if args.roles else None
    home = Home.locate()
    result = run(
        run_setup(
            home,
            roles=roles,
            directory_url=args.directory,
            server=args.server,
            fqdn=args.fqdn,
            https=args.https,
        )
    )
    if args.log_format is not None:
        home.write_config({**home.read_config(), "log_format": args.log_format})
        console.print(f"  Log format: {args.log_format}", highlight=False)
    if args.https is not None:
        console.print(f"  Control API and admin center: {args.https or 'off'}", highlight=False)
    if args.test_user:
        name = run(create_test_user(home))
        console.print(f"  Test mailbox for Test-PopConnectivity: {name}", highlight=False)
    if args.lmtp is not None:
        home.write_config({**home.read_config(), "lmtp": args.lmtp})
        where = f"{args.lmtp} and {home.lmtp_socket}" if args.lmtp else str(home.lmtp_socket)
        console.print(f"  LMTP (MSExchangeDelivery): {where}", highlight=False)
    verb = "Set up" if result.created else "Already set up:"
    console.print(f"{verb} popgate in {result.home.root}")
    console.print(
        f"  server {result.server} ({result.fqdn}), roles {', '.join(sorted(result.roles))}"
    )
    if result.administrator_password_file.exists():
        console.print(f"  Administrator password: {result.administrator_password_file}")
    else:
        console.print("  Administrator: set up on another computer of the organization")
    console.print(
        "  Start the POP3 services with 'popgate up', or run 'popgate host' and then "
        "'popgate net start MSExchangePOP3BE' and 'popgate net start MSExchangePOP3'"
    )
    return 0


# -- mailbox -------------------------------------------------------------------------------


def cmd_mailbox_add(args: argparse.Namespace) -> int:
    """Create a mailbox (and its empty maildrop)."""
    home = Home.locate()
    password = (
        _read_new_password(args.password_stdin)
        if args.password_stdin or sys.stdin.isatty()
        else None
    )

    async def add(directory: Directory) -> None:
        mailbox = await directory.add_mailbox(
            args.name, address=args.address, password=password, server=args.server
        )
        if mailbox.server == home.server_name.lower():
            # Elsewhere the holding server's services make the maildrop when first used.
            await MaildirStore(home.mail_root).create_mailbox(mailbox.guid)
        console.print(
            f"Created mailbox {mailbox.name} <{mailbox.address}> ({mailbox.guid}) "
            f"on server {mailbox.server or '(none: no server has the Mailbox role)'}",
            highlight=False,
        )
        if password is None:
            console.print(f"No password set; run 'popgate mailbox set-password {mailbox.name}'")

    run(with_directory(home, add))
    return 0


def cmd_mailbox_list(args: argparse.Namespace) -> int:
    """List mailboxes."""
    del args
    mailboxes = run(with_directory(Home.locate(), lambda d: d.list_mailboxes()))
    table = Table("Name", "Address", "PopEnabled", "Server", "Guid")
    for mailbox in mailboxes:
        table.add_row(
            mailbox.name,
            mailbox.address,
            str(mailbox.pop_enabled),
            mailbox.server or "",
            str(mailbox.guid),
        )
    console.print(table)
    return 0


def cmd_mailbox_show(args: argparse.Namespace) -> int:
    """Show one mailbox with its message count and size."""
    home = Home.locate()

    async def show(directory: Directory) -> None:
        mailbox = await _require_mailbox(directory, args.name)
        store = MaildirStore(home.mail_root)
        await store.create_mailbox(mailbox.guid)
        count, size = await store.stats(mailbox.guid)
        rows = {
            "Name": mailbox.name,
            "Guid": str(mailbox.guid),
            "PrimarySmtpAddress": mailbox.address,
            "PopEnabled": str(mailbox.pop_enabled),
            "Server": mailbox.server or "",
            "ItemCount": str(count),
            "TotalItemSize": f"{size} bytes",
        }
        width = max(len(key) for key in rows)
        for key, value in rows.items():
            console.print(f"{key.ljust(width)} : {value}", highlight=False)

    run(with_directory(home, show))
    return 0


def cmd_mailbox_remove(args: argparse.Namespace) -> int:
    """Remove a mailbox and its mail."""
    home = Home.locate()

    async def remove(directory: Directory) -> None:
        mailbox = await _require_mailbox(directory, args.name)
        if mailbox.is_administrator:
            raise CommandError("the Administrator account cannot be removed")
        await directory.remove_mailbox(mailbox.name)
        await MaildirStore(home.mail_root).delete_mailbox(mailbox.guid)
        console.print(f"Removed mailbox {mailbox.name} and its mail")

    run(with_directory(home, remove))
    return 0


def cmd_mailbox_set_password(args: argparse.Namespace) -> int:
    """Set a mailbox's password (argon2id hash plus SCRAM-SHA-256 keys)."""
    password = _read_new_password(args.password_stdin)

    async def set_password(directory: Directory) -> None:
        await directory.set_password(args.name, password)

    run(with_directory(Home.locate(), set_password))
    console.print(f"Password set for {args.name}")
    return 0


def cmd_mailbox_set(args: argparse.Namespace) -> int:
    """Change a mailbox's settings (Set-CASMailbox -PopEnabled, Set-Mailbox quota)."""
    if args.pop_enabled is None and args.quota is None:
        raise CommandError(
            "nothing to change; give --pop-enabled $true|$false or --quota SIZE|unlimited"
        )
    enabled = None if args.pop_enabled is None else parse_bool(args.pop_enabled, "PopEnabled")
    quota = None if args.quota is None else parse_size("ProhibitSendReceiveQuota", args.quota)

    async def change(directory: Directory) -> None:
        if enabled is not None:
            await directory.set_pop_enabled(args.name, enabled)
        if args.quota is not None:
            await directory.set_quota(args.name, quota)

    run(with_directory(Home.locate(), change))
    if enabled is not None:
        console.print(f"PopEnabled is now {enabled} for {args.name}")
    if args.quota is not None:
        console.print(f"ProhibitSendReceiveQuota is now {format_size(quota)} for {args.name}")
    return 0


def _messages_to_import(args: argparse.Namespace) -> Iterator[bytes]:
    if args.maildir:
        return maildir_messages(Path(args.maildir))
    if args.mbox:
        return mbox_messages(Path(args.mbox))
    return eml_messages(Path(name) for name in args.files)


def _count_messages(args: argparse.Namespace) -> int | None:
    if args.maildir:
        return maildir_count(Path(args.maildir))
    if args.files:
        return len(args.files)
    return None


def cmd_mailbox_import(args: argparse.Namespace) -> int:
    """Import messages from a Maildir, an mbox file or .eml files."""
    home = Home.locate()
    if not (args.maildir or args.mbox or args.files):
        raise CommandError("name what to import: --maildir DIR, --mbox FILE or FILE.eml ...")

    async def do_import(directory: Directory) -> int:
        mailbox = await _require_mailbox(directory, args.name)
        store = MaildirStore(home.mail_root)
        await store.create_mailbox(mailbox.guid)
        with Progress(console=error_console, transient=False) as progress:
            task = progress.add_task(f"Importing into {mailbox.name}", total=_count_messages(args))
            return await import_messages(
                store,
                mailbox.guid,
                _messages_to_import(args),
                delivered=lambda: progress.advance(task),
            )

    count = run(with_directory(home, do_import))
    console.print(f"Imported {count} messages into {args.name}")
    return 0


# -- settings ------------------------------------------------------------------------------


def cmd_settings_show(args: argparse.Namespace) -> int:
    """Show this server's POP3 settings (configured, or effective with --effective)."""
    home = Home.locate()
    settings = run(
        with_directory(
            home, lambda d: d.get_pop_settings(home.server_name, effective=args.effective)
        )
    )
    fqdn = home.read_config().get("fqdn", home.server_name)
    width = max(len(name) for name in PopSettings.EXCHANGE_NAMES.values())
    for field_name, exchange_name in PopSettings.EXCHANGE_NAMES.items():
        value = getattr(settings, field_name)
        if field_name == "internal_connection_settings" and value is None:
            value = settings.internal_connection_settings_for(fqdn)
        text = format_setting(field_name, value)
        console.print(f"{exchange_name.ljust(width)} : {text}", highlight=False, markup=False)
    return 0


def cmd_settings_set(args: argparse.Namespace) -> int:
    """Change POP3 settings of this server; they apply when the services restart."""
    home = Home.locate()
    if len(args.pairs) % 2:
        raise CommandError("give settings as NAME VALUE pairs, e.g. LoginType SecureLogin")
    changes = dict(zip(args.pairs[::2], args.pairs[1::2], strict=True))

    async def change(directory: Directory) -> list[str]:
        await directory.set_pop_settings(home.server_name, **changes)
        server = await directory.get_server(home.server_name)
        return [] if server is None else settings_without_effect(changes, server.roles)

    idle = run(with_directory(home, change))
    names = ", ".join(changes)
    console.print(f"{names} set; restart the POP3 services to apply", highlight=False)
    if idle:
        error_console.print(
            f"warning: server {home.server_name} does not use {', '.join(idle)}: each setting "
            "takes effect on the role that owns it (Client Access or Mailbox); set it on the "
            "servers of that role",
            highlight=False,
        )
    return 0


# -- certificates --------------------------------------------------------------------------


def cmd_certificate_import(args: argparse.Namespace) -> int:
    """Import a certificate and key for X509CertificateName."""
    home = Home.locate()
    name = validate_domain(args.name)
    certificate, key = Path(args.cert), Path(args.key)
    for path in (certificate, key):
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
    try:
        server_context(certificate, key)
    except TlsConfigError as error:
        raise CommandError(str(error)) from None
    target_certificate, target_key = home.named_certificate(name)
    target_certificate.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_secret(target_key, key.read_text(encoding="utf-8").strip())
    target_certificate.write_text(certificate.read_text(encoding="utf-8"), encoding="utf-8")
    console.print(
        f"Imported certificate {name}; use it with "
        f"'popgate settings set X509CertificateName {name}' and restart the POP3 services",
        highlight=False,
    )
    return 0


# -- service -------------------------------------------------------------------------------


def cmd_service_run(args: argparse.Namespace) -> int:
    """Run one service in the foreground (what the service host does)."""
    service = find_service(args.name)
    if service is None:
        raise CommandError("The service name is invalid.")
    home = Home.locate()
    text = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = stderr_handler(configured_log_format(home), text)
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    run(run_service(home, service, worker=args.worker))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(prog="popgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    setup = commands.add_parser(
        "setup", help="create the data directory, directory and certificate"
    )
    setup.add_argument(
        "--roles", help="ClientAccess, Mailbox or both, comma separated (default both)"
    )
    setup.add_argument(
        "--https",
        type=https_option,
        metavar="ADDRESS:PORT",
        help="where the host serves its control API and admin center (default "
        "127.0.0.1:8443, loopback only; 'off' for none)",
    )
    setup.add_argument(
        "--directory",
        metavar="URL",
        help="join the organization whose directory is this PostgreSQL database "
        "(postgresql+asyncpg://user:password@host/database) instead of a directory of this "
        "computer's own",
    )
    setup.add_argument("--server", metavar="NAME", help="this computer's server name "
                       "(default: its host name)")  # fmt: skip
    setup.add_argument("--fqdn", help="this computer's DNS name, which front ends connect to "
                       "(default: what the resolver says)")  # fmt: skip
    setup.add_argument(
        "--test-user",
        action="store_true",
        help="create the test mailbox extest_<server> that 'popgate test-connectivity' logs "
        "on as (New-TestCasConnectivityUser)",
    )
    setup.add_argument(
        "--lmtp",
        type=https_option,
        metavar="ADDRESS:PORT",
        help="where MSExchangeDelivery takes mail by LMTP besides its Unix socket (default "
        "127.0.0.1:24; 'off' for the Unix socket only)",
    )
    setup.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="how services and the host write their logs: text (default) or json, one "
        "object per line (POPGATE_LOG_FORMAT overrides it)",
    )
    setup.set_defaults(handler=cmd_setup)

    mailbox = commands.add_parser("mailbox", help="manage mailboxes")
    mailbox_commands = mailbox.add_subparsers(
        dest="mailbox_command", required=True, metavar="ACTION"
    )
    add = mailbox_commands.add_parser("add", help="create a mailbox")
    add.add_argument("name")
    add.add_argument("--address", help="primary SMTP address (default NAME@<default domain>)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument(
        "--server",
        help="the Mailbox server to hold it (default: the one holding the fewest mailboxes)",
    )
    add.set_defaults(handler=cmd_mailbox_add)
    mailbox_commands.add_parser("list", help="list mailboxes").set_defaults(
        handler=cmd_mailbox_list
    )
    show = mailbox_commands.add_parser("show", help="show one mailbox")
    show.add_argument("name")
    show.set_defaults(handler=cmd_mailbox_show)
    remove = mailbox_commands.add_parser("remove", help="remove a mailbox and its mail")
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_mailbox_remove)
    set_password = mailbox_commands.add_parser("set-password", help="set a mailbox's password")
    set_password.add_argument("name")
    set_password.add_argument("--password-stdin", action="store_true")
    set_password.set_defaults(handler=cmd_mailbox_set_password)
    set_mailbox = mailbox_commands.add_parser("set", help="change a mailbox (Set-CASMailbox)")
    set_mailbox.add_argument("name")
    set_mailbox.add_argument("--pop-enabled", metavar="BOOL", help="$true or $false")
    set_mailbox.add_argument(
        "--quota",
        metavar="SIZE",
        help="ProhibitSendReceiveQuota: the most the mailbox may hold, such as 500MB, or "
        "unlimited; delivery refuses a message that would go past it",
    )
    set_mailbox.set_defaults(handler=cmd_mailbox_set)
    imp = mailbox_commands.add_parser("import", help="import messages")
    imp.add_argument("name")
    source = imp.add_mutually_exclusive_group()
    source.add_argument("--maildir", help="a Maildir folder (cur/ and new/)")
    source.add_argument("--mbox", help="an mbox file")
    imp.add_argument("files", nargs="*", help=".eml files")
    imp.set_defaults(handler=cmd_mailbox_import)
    add_move_commands(mailbox_commands)

    settings = commands.add_parser(
        "settings", help="this server's POP3 settings (Get/Set-PopSettings)"
    )
    settings_commands = settings.add_subparsers(
        dest="settings_command", required=True, metavar="ACTION"
    )
    settings_show = settings_commands.add_parser("show", help="show the settings")
    settings_show.add_argument(
        "--effective", action="store_true", help="what the running services use"
    )
    settings_show.set_defaults(handler=cmd_settings_show)
    settings_set = settings_commands.add_parser("set", help="change one setting")
    settings_set.add_argument(
        "pairs", nargs="+", metavar="NAME VALUE", help="e.g. LoginType PlainTextLogin"
    )
    settings_set.set_defaults(handler=cmd_settings_set)

    certificate = commands.add_parser("certificate", help="TLS certificates for the services")
    certificate_commands = certificate.add_subparsers(
        dest="certificate_command", required=True, metavar="ACTION"
    )
    cert_import = certificate_commands.add_parser(
        "import", help="import a certificate and key under an FQDN (X509CertificateName)"
    )
    cert_import.add_argument("name", help="the FQDN the certificate is for")
    cert_import.add_argument("--cert", required=True, help="PEM certificate (chain)")
    cert_import.add_argument("--key", required=True, help="PEM private key")
    cert_import.set_defaults(handler=cmd_certificate_import)

    service = commands.add_parser("service", help="run a service in the foreground")
    service_commands = service.add_subparsers(
        dest="service_command", required=True, metavar="ACTION"
    )
    run_parser = service_commands.add_parser("run", help="run MSExchangePOP3BE (or MSExchangePOP3)")
    run_parser.add_argument("name")
    # Set by a service for the extra processes it starts (WorkerProcesses); not for people.
    run_parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    run_parser.set_defaults(handler=cmd_service_run)
    add_service_set(service_commands)
    add_host_commands(commands)
    add_shell_command(commands)
    add_deliver_command(commands)
    add_test_connectivity_command(commands)
    add_directory_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every command but ``popgate net`` (see ``popgate.cli.main``)."""
    # Everything popgate writes (directory, mail, logs) is its own; the control socket is
    # the one thing made reachable on purpose.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except CommandError as error:
        fail(str(error), error.status)
    except (DirectoryError, StoreError) as error:
        fail(str(error), USAGE_ERROR)
    except (HomeNotSetUpError, HostError, ServiceStartError, TlsConfigError) as error:
        fail(str(error), RUNTIME_ERROR)
    except KeyboardInterrupt:
        return 130
    return status
