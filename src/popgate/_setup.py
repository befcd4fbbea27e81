"""``popgate setup``: the data directory, certificate, directory, this server and Administrator."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from popgate.directory import Directory, DirectoryError, Role, RoleGroup
from popgate.home import Home
from popgate.net import create_self_signed_certificate

__all__ = [
    "ADMINISTRATOR",
    "SetupResult",
    "control_url",
    "register_endpoint",
    "run_setup",
    "write_secret",
]

ADMINISTRATOR = "Administrator"


@dataclass(frozen=True, slots=True)
class SetupResult:
    """What setup made or found."""

    home: Home
    server: str
    fqdn: str
    roles: frozenset[Role]
    administrator_password_file: Path
    created: bool


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to a new 0600 file (atomically, never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    temporary.replace(path)


def _read_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(32)
    write_secret(path, value)
    return value


def _restrict(home: Home) -> None:
    """Private files stay private, while any local user can reach the host's control socket.

    The data directory and run/ are traversable (0711) but not listable, so that the host can
    see, refuse and audit a non-administrator; everything else in them is the owner's alone.
    """
    home.root.chmod(0o711)
    home.run_dir.chmod(0o711)
    private = [home.config_file, home.root / "services.json", *home.root.glob("directory.db*")]
    for path in private:
        if path.exists():
            path.chmod(0o600)


def control_url(home: Home, binding: str | None = None) -> str | None:
    """Where other computers reach this host's control API, or None if it is local only.

    That is the HTTPS ``binding`` (default: the one of ``popgate setup --https``) under this
    computer's FQDN; a loopback binding is local only.
    """
    if binding is None:
        binding = home.read_config().get("admin_https")
    if not binding:
        return None
    host, _, port = binding.rpartition(":")
    host = host.strip("[]")
    if host in ("localhost", "::1") or host.startswith("127."):
        return None
    return f"https://{home.read_config().get('fqdn', host)}:{port}/"


async def register_endpoint(
    directory: Directory, home: Home, server: str, binding: str | None = None
) -> None:
    """Record this host's control API address and certificate in the directory."""
    await directory.set_server_endpoint(
        server,
        control_url=control_url(home, binding),
        certificate_pem=home.certificate.read_text(encoding="ascii"),
    )


async def run_setup(
    home: Home,
    *,
    roles: Collection[Role] | None = None,
    directory_url: str | None = None,
    server: str | None = None,
    fqdn: str | None = None,
    https: str | None = None,
) -> SetupResult:
    """Create or complete popgate's state in ``home``; running it again changes nothing.

    ``directory_url`` joins the organization whose directory is there (PostgreSQL, shared by
    its computers) instead of a directory of this computer's own; ``server`` and ``fqdn``
    name this computer in it (default: its host name and FQDN). All three apply when the
    computer is first set up. ``https`` is the control API's binding (``""`` turns it off).
    """
    created = not home.config_file.exists()
    home.root.mkdir(parents=True, exist_ok=True, mode=0o750)
    for folder in (home.mail_root, home.run_dir, home.log_dir):
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    home.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _restrict(home)
    config = home.read_config() if not created else {}
    known = config.get("directory_url")
    if directory_url is not None and known is not None and directory_url != known:
        raise DirectoryError(
            "this computer is set up with another directory already; move that one with "
            "'popgate directory migrate --to URL' instead"
        )
    fqdn = config.get("fqdn") or fqdn or socket.getfqdn()
    # The directory keeps server names in lower case (they are DNS labels).
    server_name = (config.get("server") or server or socket.gethostname().split(".")[0]).lower()
    config.setdefault("server", server_name)
    config.setdefault("fqdn", fqdn)
    config.setdefault("directory_url", directory_url or home.default_directory_url)
    if https is not None:
        # The admin center stays on loopback until an administrator opens it up here.
        config["admin_https"] = https
    home.write_config(config)
    if not home.certificate.exists() or not home.private_key.exists():
        create_self_signed_certificate(fqdn, home.certificate, home.private_key)

    directory = await Directory.connect(config["directory_url"])
    try:
        await directory.upgrade()
        existing = await directory.get_server(server_name)
        others = [known for known in await directory.list_servers() if known.name != server_name]
        if roles is None:
            roles = existing.roles if existing else {Role.CLIENT_ACCESS, Role.MAILBOX}
        registered = await directory.add_server(server_name, fqdn=fqdn, roles=roles)
        if created and not others:
            # The first computer of an organization names its default domain; a computer
            # that joins keeps the organization's.
            domain = fqdn.split(".", 1)[1] if "." in fqdn else fqdn
            await directory.set_default_domain(domain)
        await directory.set_proxy_secret(
            server_name, _read_or_create_secret(home.proxy_secret_file)
        )
        await register_endpoint(directory, home, server_name)
        if await directory.get_mailbox(ADMINISTRATOR) is None:
            password = secrets.token_urlsafe(18)
            await directory.add_mailbox(ADMINISTRATOR, password=password, is_administrator=True)
            write_secret(home.administrator_password_file, password)
        await directory.add_role_group_member(RoleGroup.ORGANIZATION_MANAGEMENT, ADMINISTRATOR)
    finally:
        await directory.close()
    _restrict(home)
    return SetupResult(
        home=home,
        server=server_name,
        fqdn=fqdn,
        roles=registered.roles,
        administrator_password_file=home.administrator_password_file,
        created=created,
    )
