"""The seed, "Start and stop the POP3 services", followed literally with the command line.

Services Stopped and Manual after setup; nothing listens; ``net start`` each service with
cmd.exe's messages; the status view shows both Running; a client reads its mail; ``net
stop`` each service; the port refuses again.
"""

from __future__ import annotations

import poplib
import socket

from popgate.host._client import HostClient
from popgate.host._common import control_socket_path
from tests.e2e.conftest import Installation, insecure_client_context
from tests.e2e.test_backend import MESSAGES, PASSWORD


def refused(port: int) -> bool:
    """True when nothing accepts connections on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_start_and_stop_the_pop3_services_from_the_command_line(
    installation: Installation,
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, installation.home / "eml")
    installation.start_host()

    # By default, the two POP3 services aren't started; both install as Manual.
    status = installation.popgate("status").stdout
    rows = {line.split()[0]: line.split() for line in status.splitlines()[1:] if line.strip()}
    assert rows["MSExchangePOP3"][-2:] == ["Stopped", "ClientAccess"]
    assert rows["MSExchangePOP3BE"][-2:] == ["Stopped", "Mailbox"]
    services = {s["name"]: s for s in installation_services(installation)}
    assert services["MSExchangePOP3"]["startup_type"] == "Manual"
    assert services["MSExchangePOP3BE"]["startup_type"] == "Manual"
    assert refused(installation.plain_port)
    assert refused(installation.ssl_port)

    # On the Client Access server: Net Start msExchangePOP3 (the docs' spelling).
    started = installation.net("start", "msExchangePOP3")
    assert started.returncode == 0, started
    assert started.stdout.startswith("The Microsoft Exchange POP3 service is starting.")
    assert started.stdout.endswith(
        "\nThe Microsoft Exchange POP3 service was started successfully.\n\n"
    )
    # On the Mailbox server: Net Start MSExchangePOP3BE.
    started = installation.net("start", "MSExchangePOP3BE")
    assert started.returncode == 0, started
    assert started.stdout.startswith("The Microsoft Exchange POP3 Backend service is starting.")
    assert started.stdout.endswith(
        "\nThe Microsoft Exchange POP3 Backend service was started successfully.\n\n"
    )

    # The status view shows both Running, with their process ids.
    status = installation.popgate("status").stdout
    assert status.splitlines()[0].split() == ["Name", "PID", "Description", "Status", "Group"]
    rows = {line.split()[0]: line.split() for line in status.splitlines()[1:] if line.strip()}
    assert rows["MSExchangePOP3"][-2:] == ["Running", "ClientAccess"]
    assert rows["MSExchangePOP3BE"][-2:] == ["Running", "Mailbox"]
    assert rows["MSExchangePOP3"][1].isdigit()
    assert rows["MSExchangePOP3BE"][1].isdigit()

    # Email clients connect over 110 (here its test port) and read their mail.
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    assert client.getwelcome() == b"+OK The Microsoft Exchange POP3 service is ready."
    client.stls(insecure_client_context())
    client.user("alice")
    client.pass_(PASSWORD)
    assert client.stat()[0] == len(MESSAGES)
    assert b"Subject: plain LF" in b"\r\n".join(client.retr(1)[1])
    client.quit()

    stopped = installation.net("stop", "MSExchangePOP3")
    assert stopped.returncode == 0, stopped
    assert stopped.stdout.startswith("The Microsoft Exchange POP3 service is stopping.")
    assert stopped.stdout.endswith(
        "\nThe Microsoft Exchange POP3 service was stopped successfully.\n\n"
    )
    stopped = installation.net("stop", "MSExchangePOP3BE")
    assert stopped.returncode == 0, stopped
    assert stopped.stdout.endswith(
        "\nThe Microsoft Exchange POP3 Backend service was stopped successfully.\n\n"
    )
    assert refused(installation.plain_port)
    assert refused(installation.ssl_port)
    status = installation.popgate("status").stdout
    assert status.count("Stopped") == 2


def installation_services(installation: Installation) -> list[dict[str, object]]:
    """The host's view of the services, through its control API."""
    with HostClient.local(control_socket_path(installation.layout)) as client:
        return client.services()
