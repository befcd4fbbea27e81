"""Remote management: from cas1, an administrator sees and controls the services of every
computer through that computer's host, with the same permissions and one audit log.

cas1's host calls mbx2's host over HTTPS, trusting only the certificate mbx2 registered in the
directory, logged in as server cas1 and naming the caller; mbx2's host applies the caller's
role groups and audits the call itself.
"""

from __future__ import annotations

import poplib
import re
from typing import cast

import httpx
import pytest
from playwright.sync_api import Page, expect

from popgate.net import pinned_context
from tests.multi.conftest import HTTPS_PORT, POP3S_PORT, Organization, insecure_client_context

VIEWER, VIEWER_PASSWORD = "viewer", "viewer's long passphrase"
BACKEND = "MSExchangePOP3BE"


def shell(org: Organization, server: str, script: str) -> str:
    """``popgate shell -c SCRIPT`` on ``server`` as root (a local administrator there)."""
    result = org.popgate(server, "shell", "-c", script, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def api(org: Organization, server: str, user: str, password: str) -> httpx.Client:
    """The control API of ``server``'s host over HTTPS, logged in as ``user``."""
    return httpx.Client(
        base_url=f"https://{org.address(server)}:{HTTPS_PORT}/api/v1",
        auth=(user, password),
        # Trust exactly that computer's own (self-signed) certificate, as its peers do.
        verify=pinned_context(org.layout(server).certificate.read_text()),
        timeout=60,
    )


@pytest.fixture(scope="module")
def viewer(organization: Organization) -> str:
    """A View-Only Organization Management account (its mailbox on mbx1)."""
    organization.add_mailbox("mbx1", VIEWER, VIEWER_PASSWORD)
    shell(
        organization,
        "cas1",
        f'Add-RoleGroupMember "View-Only Organization Management" -Member {VIEWER}',
    )
    return VIEWER


def test_the_shell_on_cas1_stops_and_starts_the_backend_of_mbx2(
    organization: Organization,
) -> None:
    org = organization
    listed = shell(
        org, "cas1", "Get-Service -ComputerName mbx2 | Format-List Name,Status,MachineName"
    )
    assert re.search(rf"Name\s*: {BACKEND}\s+Status\s*: Running\s+MachineName\s*: mbx2", listed)
    assert "MSExchangePOP3 " not in listed.replace(BACKEND, "")  # cas1's own is not listed
    before = org.services("mbx1")

    stopped = shell(
        org, "cas1", f"Get-Service -ComputerName mbx2 {BACKEND} | Stop-Service -PassThru"
    )
    assert re.search(rf"Stopped\s+{BACKEND}", stopped), stopped
    assert org.services("mbx2")[BACKEND]["status"] == "Stopped"
    assert org.services("cas1")["MSExchangePOP3"]["status"] == "Running"
    started = shell(
        org, "cas1", f"Get-Service -ComputerName mbx2 {BACKEND} | Start-Service -PassThru"
    )
    assert re.search(rf"Running\s+{BACKEND}", started), started
    assert org.services("mbx2")[BACKEND]["status"] == "Running"
    # mbx1 was not touched.
    assert org.services("mbx1")[BACKEND]["pid"] == before[BACKEND]["pid"]

    # mbx2's host audited both, naming the caller on cas1 and the way it came.
    with org.control("mbx2") as mbx2:
        entries = mbx2.search_audit(cmdlets=["Stop-Service", "Start-Service"], result_size=10)
    remote = [entry for entry in entries if entry["origin"].endswith("via cas1")]
    assert [(e["action"], e["target"], e["result"]) for e in remote[:2]] == [
        ("Start-Service", BACKEND, "Success"),
        ("Stop-Service", BACKEND, "Success"),
    ]
    assert all(entry["actor"] == "root" for entry in remote[:2])


def test_net_and_status_reach_another_computer_with_server(organization: Organization) -> None:
    org = organization
    stopped = org.net("cas1", "stop", BACKEND, "--server", "mbx2")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.startswith("The Microsoft Exchange POP3 Backend service is stopping")
    assert "was stopped successfully" in stopped.stdout
    status = org.popgate("cas1", "status", "--server", "mbx2").stdout
    assert re.search(rf"{BACKEND}\s.*Stopped", status), status
    started = org.net("cas1", "start", BACKEND, "--server", "mbx2")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "was started successfully" in started.stdout
    assert org.services("mbx2")[BACKEND]["status"] == "Running"
    unknown = org.net("cas1", "start", BACKEND, "--server", "mbx9")
    assert unknown.returncode != 0
    assert "There is no server 'mbx9'" in unknown.stderr


def test_a_view_only_user_sees_but_cannot_control_another_computer(
    organization: Organization, viewer: str
) -> None:
    org = organization
    with api(org, "cas1", viewer, VIEWER_PASSWORD) as client:
        listed = client.get("/services", params={"server": "mbx2"})
        assert listed.status_code == 200, listed.text
        assert {view["name"] for view in listed.json()} == {BACKEND, "MSExchangeDelivery"}
        refused = client.post(f"/services/{BACKEND}/stop", params={"server": "mbx2"})
        assert refused.status_code == 403
        assert refused.json()["error"] == {"code": 5, "message": "Access is denied."}
    assert org.services("mbx2")[BACKEND]["status"] == "Running"
    with org.control("mbx2") as mbx2:
        entries = mbx2.search_audit(cmdlets=["Stop-Service"], user_ids=[viewer], result_size=5)
    assert entries
    assert entries[0]["result"] == "Denied"
    assert entries[0]["origin"].endswith("via cas1")


def test_hosts_accept_only_organization_servers_and_give_servers_no_rights(
    organization: Organization,
) -> None:
    org = organization
    secret = org.layout("cas1").proxy_secret_file.read_text().strip()
    with api(org, "mbx2", "server/cas1", "not the secret of cas1") as client:
        assert client.get("/services").status_code == 401
    # The right secret proves the server, which acts only for someone it names.
    with api(org, "mbx2", "server/cas1", secret) as client:
        answer = client.get("/services")
        assert answer.status_code == 403
        forged = client.get("/services", headers={"X-Popgate-On-Behalf-Of": "not base64 json"})
        assert forged.status_code == 400


def test_the_admin_center_of_cas1_stops_and_starts_the_backend_of_mbx2(
    organization: Organization, page: Page
) -> None:
    org = organization
    page.goto(f"https://{org.address('cas1')}:{HTTPS_PORT}/ecp/")
    page.get_by_label("User name").fill("Administrator")
    page.get_by_label("Password").fill(org.administrator_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/ecp/login" not in url)
    page.get_by_role("navigation", name="Features").get_by_role("link", name="Servers").click()
    other = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="mbx2"))
    other.get_by_role("link", name="Services on mbx2").click()
    expect(page.get_by_role("heading", name="Services on mbx2")).to_be_visible()
    backend = page.get_by_role("row").filter(
        has=page.get_by_role("cell", name="Microsoft Exchange POP3 Backend", exact=True)
    )
    expect(backend.get_by_role("cell", name="Running")).to_be_visible()
    # cas1's own front end is not on mbx2's list.
    expect(page.get_by_role("cell", name="Microsoft Exchange POP3", exact=True)).to_have_count(0)
    backend.get_by_role("cell").first.click()
    page.get_by_role("toolbar").get_by_role("button", name="Stop", exact=True).click()
    expect(backend.get_by_role("cell", name="Stopped")).to_be_visible()
    assert org.services("mbx2")[BACKEND]["status"] == "Stopped"
    backend.get_by_role("cell").first.click()
    page.get_by_role("toolbar").get_by_role("button", name="Start", exact=True).click()
    expect(backend.get_by_role("cell", name="Running")).to_be_visible()
    assert org.services("mbx2")[BACKEND]["status"] == "Running"
    with org.control("mbx2") as mbx2:
        entries = mbx2.search_audit(cmdlets=["Stop-Service"], user_ids=["Administrator"])
    assert entries[0]["origin"].endswith("via cas1")


def test_each_setting_takes_effect_on_the_role_that_owns_it(organization: Organization) -> None:
    org = organization
    org.add_mailbox("mbx1", "frank", VIEWER_PASSWORD)
    org.deliver("mbx1", "frank", [f"Subject: {n}\r\n\r\nmessage {n}\r\n".encode() for n in (1, 2)])
    # LIST with a 50-digit argument: 57 octets with CRLF, over a MaxCommandSize of 40 and
    # within the default 512 (where it is answered as a number out of range).
    long_number = "9" * 50

    def through(front_end: str) -> tuple[bytes, list[bytes]]:
        client = poplib.POP3_SSL(
            org.address(front_end), POP3S_PORT, context=insecure_client_context(), timeout=30
        )
        client.user("frank")
        client.pass_(VIEWER_PASSWORD)
        try:
            # With a message number poplib returns the one-line answer (typeshed says not).
            answer = cast("bytes", client.list(long_number))
        except poplib.error_proto as refused:
            answer = refused.args[0]
        order = [line.split()[1] for line in client.uidl()[1]]
        client.quit()
        return answer, order

    answer, ascending = through("cas1")
    assert answer.startswith(b"-ERR ")
    assert b"too long" not in answer

    def configure(server: str, setting: str, value: str) -> str:
        return org.popgate(
            "cas1", "shell", "-c", f"Set-PopSettings -Server {server} -{setting} {value}"
        ).stdout

    def restart(server: str, service: str) -> None:
        shell(org, "cas1", f"Get-Service -ComputerName {server} {service} | Restart-Service")

    try:
        # Client Access settings: on a Mailbox server they change nothing (and say so).
        said = configure("mbx1", "MaxCommandSize", "40")
        assert "Server mbx1 does not use MaxCommandSize" in said
        restart("mbx1", BACKEND)
        assert through("cas1")[0] == answer
        # On the Client Access server they apply to the whole session, even the part the
        # Mailbox server's backend parses after the login.
        configure("cas1", "MaxCommandSize", "40")
        restart("cas1", "MSExchangePOP3")
        assert b"too long" in through("cas1")[0]
        assert through("cas2")[0] == answer

        # Mailbox settings: the other way round.
        said = configure("cas2", "MessageRetrievalSortOrder", "Descending")
        assert "Server cas2 does not use MessageRetrievalSortOrder" in said
        restart("cas2", "MSExchangePOP3")
        assert through("cas2")[1] == ascending
        configure("mbx1", "MessageRetrievalSortOrder", "Descending")
        restart("mbx1", BACKEND)
        assert through("cas1")[1] == through("cas2")[1] == list(reversed(ascending))
    finally:
        for server in ("cas1", "cas2", "mbx1"):
            configure(server, "MaxCommandSize", "512")
            configure(server, "MessageRetrievalSortOrder", "Ascending")
        restart("cas1", "MSExchangePOP3")
        restart("cas2", "MSExchangePOP3")
        restart("mbx1", BACKEND)
