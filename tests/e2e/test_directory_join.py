"""One directory for several computers: ``popgate directory migrate --to`` moves a single
computer's SQLite directory into PostgreSQL, and ``popgate setup --directory`` joins another
computer to it. Runs against the PostgreSQL of ``POPGATE_TEST_POSTGRES_URL`` (the test
command starts one when it runs as root, as in CI), like the directory's own tests."""

from __future__ import annotations

import asyncio
import json
import poplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from popgate.directory import Directory, Role
from tests.directory.conftest import POSTGRES_URL, POSTGRES_URL_VARIABLE, wipe_postgres
from tests.e2e.conftest import Installation, insecure_client_context, installed
from tests.e2e.test_admin_api import client_of
from tests.e2e.test_backend import MESSAGES, PASSWORD

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason=f"optional backend: set {POSTGRES_URL_VARIABLE} to run against PostgreSQL",
)


@pytest.fixture
def postgres() -> Iterator[str]:
    """The test PostgreSQL database, with no popgate tables in it."""
    asyncio.run(wipe_postgres(POSTGRES_URL))
    yield POSTGRES_URL
    asyncio.run(wipe_postgres(POSTGRES_URL))


def uidls(installation: Installation, user: str = "alice") -> list[bytes]:
    """UIDL through the front end."""
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(insecure_client_context())
    client.user(user)
    client.pass_(PASSWORD)
    listing = client.uidl()[1]
    client.quit()
    return [line.split()[1] for line in listing]


def servers_in(url: str) -> dict[str, frozenset[Role]]:
    """The servers a directory knows, with their roles."""

    async def read() -> dict[str, frozenset[Role]]:
        directory = await Directory.connect(url)
        try:
            return {server.name: server.roles for server in await directory.list_servers()}
        finally:
            await directory.close()

    return asyncio.run(read())


def mailboxes_in(url: str) -> dict[str, tuple[str, str | None]]:
    """Each mailbox's address and server."""

    async def read() -> dict[str, tuple[str, str | None]]:
        directory = await Directory.connect(url)
        try:
            return {m.name: (m.address, m.server) for m in await directory.list_mailboxes()}
        finally:
            await directory.close()

    return asyncio.run(read())


def test_migrate_moves_everything_to_postgresql_and_the_services_carry_on(
    installation: Installation, postgres: str
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, installation.home / "eml")
    installation.popgate("mailbox", "set", "alice", "--quota", "50MB")
    host = installation.start_host()
    for name in ("MSExchangePOP3BE", "MSExchangePOP3"):
        assert installation.net("start", name).returncode == 0
    before = uidls(installation)
    # The copy waits for a stopped host: nothing may change the old directory meanwhile.
    refused = installation.popgate("directory", "migrate", "--to", postgres, check=False)
    assert refused.returncode == 1
    assert "the service host is running; stop it first" in refused.stderr
    host.terminate()
    host.wait(timeout=60)

    moved = installation.popgate("directory", "migrate", "--to", postgres)
    assert "Copied the directory to postgresql+asyncpg://popgate_test:***@" in moved.stdout
    assert postgres.rsplit("@", 1)[0].rsplit(":", 1)[1] not in moved.stdout  # no password
    counts = {line.split()[0]: int(line.split()[1]) for line in moved.stdout.splitlines()[1:6]}
    assert counts["mailboxes"] == 2  # Administrator and alice
    assert counts["servers"] == 1
    config = json.loads(installation.layout.config_file.read_text())
    assert config["directory_url"] == postgres
    shown = installation.popgate("directory", "show").stdout
    assert shown.startswith("postgresql+asyncpg://popgate_test:***@")

    installation.start_host()
    for name in ("MSExchangePOP3BE", "MSExchangePOP3"):
        assert installation.net("start", name).returncode == 0
    # Same mailbox, same messages, same UIDLs; the quota came along.
    assert uidls(installation) == before
    with client_of(installation) as client:
        assert client.mailbox("alice")["prohibit_send_receive_quota"] == "50MB"
        starts = client.search_audit(cmdlets=["Start-Service"])
    # The audit entries from before the move are there, and new ones follow them.
    assert len(starts) == 4
    assert starts[0]["at"] > starts[-1]["at"]


def test_migrate_refuses_a_database_that_is_in_use(
    installation: Installation, postgres: str, tmp_path: Path
) -> None:
    with installed(tmp_path / "other") as other:
        # Another organization already lives there.
        other.popgate("directory", "migrate", "--to", postgres)
    refused = installation.popgate("directory", "migrate", "--to", postgres, check=False)
    assert refused.returncode == 2
    assert "The target directory already has rows in " in refused.stderr
    assert "servers" in refused.stderr.split(";")[0]
    config = json.loads(installation.layout.config_file.read_text())
    assert config["directory_url"].startswith("sqlite+aiosqlite:///")


def test_a_second_computer_joins_the_organization(
    installation: Installation, postgres: str, tmp_path: Path
) -> None:
    installation.popgate("directory", "migrate", "--to", postgres)
    joined = Installation(home=tmp_path / "mbx2", env=dict(installation.env))
    joined.env["POPGATE_HOME"] = str(joined.home)
    result = joined.popgate(
        "setup", "--directory", postgres, "--server", "MBX2", "--fqdn", "mbx2.example.net",
        "--roles", "Mailbox", "--lmtp", "off", "--https", "off",
    )  # fmt: skip
    assert "server mbx2 (mbx2.example.net), roles Mailbox" in result.stdout
    # The organization's Administrator was made on the first computer, not here.
    assert "Administrator: set up on another computer of the organization" in result.stdout
    assert not joined.layout.administrator_password_file.exists()
    assert servers_in(postgres) == {
        installation.layout.server_name: frozenset({Role.CLIENT_ACCESS, Role.MAILBOX}),
        "mbx2": frozenset({Role.MAILBOX}),
    }
    # Joining keeps the organization's default domain: mailboxes made on either computer
    # get the same one.
    installation.add_mailbox("carol", PASSWORD)
    joined.add_mailbox("dave", PASSWORD)
    mailboxes = mailboxes_in(postgres)
    assert mailboxes["carol"][0].split("@")[1] == mailboxes["dave"][0].split("@")[1]
    # Wherever a mailbox is made, it goes to the Mailbox server that holds the fewest (by
    # name on a tie): the Administrator is on the first computer, so carol goes to mbx2.
    assert mailboxes["carol"][1] == "mbx2"
    assert mailboxes["dave"][1] == min(installation.layout.server_name, "mbx2")
    joined.popgate("mailbox", "add", "erin", "--server", installation.layout.server_name,
                   "--password-stdin", input_text=PASSWORD + "\n")  # fmt: skip
    assert mailboxes_in(postgres)["erin"][1] == installation.layout.server_name
    # A computer set up on a directory of its own cannot be pointed at another by setup.
    refused = installation.popgate("setup", "--directory", postgres + "x", check=False)
    assert refused.returncode == 2
    assert "popgate directory migrate --to URL" in refused.stderr
