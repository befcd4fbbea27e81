"""The host's management API, which the shell's Exchange cmdlets call: a real ``popgate host``
and its directory, through the Unix socket as root and over HTTPS as directory accounts."""

from __future__ import annotations

import asyncio
import datetime
import json
import mailbox
import re
import socket
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from popgate.directory import CasMailboxSettings, Directory, PopSettings, Role
from popgate.host._client import HostClient, HostControlError
from popgate.host._common import control_socket_path
from popgate.store import MaildirStore
from tests.e2e.conftest import Installation
from tests.e2e.test_backend import MESSAGES, PASSWORD

DEFAULT_BANNER = "The Microsoft Exchange POP3 service is ready."
NEW_PASSWORD = "a new password nobody may read"


def client_of(installation: Installation) -> HostClient:
    """The host's control API through its Unix socket, as root (Organization Management)."""
    return HostClient.local(control_socket_path(installation.layout))


def https_client(installation: Installation, user: str, password: str = PASSWORD) -> HostClient:
    """The host's control API over HTTPS, logged in as a directory account."""
    url = f"https://127.0.0.1:{installation.https_port}"
    return HostClient.remote(url, user=user, password=password, verify=False)


def refusal(call: Callable[[], object]) -> HostControlError:
    """The error ``call`` raises."""
    with pytest.raises(HostControlError) as caught:
        call()
    return caught.value


def audit_of(client: HostClient, action: str) -> list[dict[str, Any]]:
    """The audit entries of ``action``, newest first."""
    return client.search_audit(cmdlets=[action])


def test_pop_settings_show_both_copies_and_change_all_or_nothing(
    installation: Installation,
) -> None:
    installation.start_host()
    server = installation.layout.server_name
    fqdn = installation.layout.read_config().get("fqdn") or server
    with client_of(installation) as client:
        view = client.get_pop_settings()
        assert set(view) == {"server", "configured", "effective"}
        assert view["server"] == server
        assert client.get_pop_settings(server.upper()) == view
        names = set(PopSettings.EXCHANGE_NAMES.values())
        assert set(view["configured"]) == set(view["effective"]) == names
        configured, effective = view["configured"], view["effective"]
        assert configured["ProxyTargetPort"] == str(installation.backend_port)
        assert effective["ProxyTargetPort"] == "1995"  # no service has started yet
        assert configured["LoginType"] == "SecureLogin"
        assert configured["InternalConnectionSettings"] == f"{fqdn}:995:SSL,{fqdn}:110:TLS"

        # A change is configured at once and in effect after the next start.
        changed = client.set_pop_settings({"banner": "Welcome to Contoso"})
        assert changed["configured"]["Banner"] == "Welcome to Contoso"
        assert changed["effective"]["Banner"] == DEFAULT_BANNER
        assert "Banner" in changed["restart_needed"]
        assert "LoginType" not in changed["restart_needed"]

        # Invalid names and values are refused with the directory's message; nothing changes.
        before = client.get_pop_settings()["configured"]
        invalid: list[tuple[dict[str, object], str]] = [
            ({"LoginType": "Bogus"}, "LoginType must be one of 1 PlainTextLogin, "),
            ({"MaxCommandSize": 5}, "MaxCommandSize must be between 40 and 1024; got 5."),
            ({"MaxCommandSize": "100", "LoginType": "Bogus"}, "LoginType must be one of"),
            ({"MaxComandSize": 100}, "Did you mean MaxCommandSize?"),
            ({"Banner": "x", "LoginType": {"Add": ["1"]}}, "LoginType has a single value"),
            ({"SSLBindings": {"Replace": ["0.0.0.0:995"]}}, "'Replace' is neither Add nor"),
            ({"SSLBindings": ["0.0.0.0:99999"]}, "use a port from 1 to 65535"),
        ]
        for changes, message in invalid:
            error = refusal(partial(client.set_pop_settings, changes))
            assert (error.status, error.code) == (422, 87)
            assert message in str(error)
        assert client.get_pop_settings()["configured"] == before
        error = refusal(lambda: client.set_pop_settings({"Banner": "x"}, "ghost"))
        assert (error.status, str(error)) == (404, "There is no server 'ghost'; "
                                              "Get-ExchangeServer lists the servers.")  # fmt: skip

        # Lists are replaced by a list and edited by @{Add=...; Remove=...}, names in any case.
        ssl = f"127.0.0.1:{installation.ssl_port}"
        edited = client.set_pop_settings(
            {"sslbindings": {"Add": ["[::1]:9950", "10.0.0.1:0995"], "remove": ssl}}
        )
        assert edited["configured"]["SSLBindings"] == "[::1]:9950,10.0.0.1:995"
        edited = client.set_pop_settings(
            {"SSLBindings": {"Remove": ["10.0.0.1:995", "192.0.2.1:995"], "Add": ssl}}
        )
        assert edited["configured"]["SSLBindings"] == f"[::1]:9950,{ssl}"
        replaced = client.set_pop_settings({"SSLBindings": [ssl], "MaxCommandSize": 100})
        assert replaced["configured"]["SSLBindings"] == ssl
        assert replaced["configured"]["MaxCommandSize"] == "100"
        # An unset InternalConnectionSettings is edited from the default the servers show.
        internal = client.set_pop_settings(
            {"InternalConnectionSettings": {"Remove": [f"{fqdn}:110:TLS"]}}
        )
        assert internal["configured"]["InternalConnectionSettings"] == f"{fqdn}:995:SSL"
        cleared = client.set_pop_settings({"OwaServerUrl": None, "EnableExactRFC822Size": False})
        assert cleared["configured"]["EnableExactRFC822Size"] == "$false"

        # Starting a service applies the configured copy.
        client.start("MSExchangePOP3BE")
        installation.wait_for_status("MSExchangePOP3BE", "Running")
        applied = client.get_pop_settings()
        assert applied["effective"]["Banner"] == "Welcome to Contoso"
        assert applied["effective"] == applied["configured"]

        entries = audit_of(client, "Set-PopSettings")
        assert [(e["result"], e["target"]) for e in entries[:2]] == [
            ("Success", server),
            ("Success", server),
        ]
        assert entries[-1]["detail"] == "banner=Welcome to Contoso"
        refused = [e for e in entries if e["result"] == "Refused"]
        assert len(refused) == 8
        assert any(
            e["detail"].startswith("MaxCommandSize=5 - MaxCommandSize must be between")
            for e in refused
        )
        assert any(e["detail"].startswith("sslbindings=@{Add=[::1]:9950,") for e in entries)


def test_mailboxes_cas_settings_role_groups_and_servers(installation: Installation) -> None:
    installation.start_host()
    server = installation.layout.server_name
    with client_of(installation) as client:
        alice = client.new_mailbox("alice", PASSWORD, "alice@contoso.com")
        assert set(alice) == {
            "name", "address", "guid", "pop_enabled", "server", "is_administrator", "created",
            "prohibit_send_receive_quota",
        }  # fmt: skip
        assert alice["prohibit_send_receive_quota"] == "unlimited"
        assert (alice["name"], alice["address"], alice["server"]) == (
            "alice",
            "alice@contoso.com",
            server,
        )
        assert alice["pop_enabled"] is True
        assert alice["is_administrator"] is False
        assert (installation.layout.mail_root / alice["guid"]).is_dir()
        bob = client.new_mailbox("bob", PASSWORD)
        assert bob["address"].startswith("bob@")
        client.new_mailbox("b_b", PASSWORD, "b_b@fabrikam.com")

        assert client.mailbox("ALICE@contoso.com") == alice
        names = [m["name"] for m in client.mailboxes()]
        assert names == sorted(["Administrator", "alice", "bob", "b_b"], key=str.lower)
        assert [m["name"] for m in client.mailboxes("A*")] == ["Administrator", "alice"]
        assert [m["name"] for m in client.mailboxes("?ob")] == ["bob"]
        assert [m["name"] for m in client.mailboxes("*@CONTOSO.com")] == ["alice"]
        # LIKE's own wildcards are plain characters in PowerShell patterns.
        assert [m["name"] for m in client.mailboxes("b_*")] == ["b_b"]
        assert client.mailboxes("%") == []

        for call, status, code, message in [
            (lambda: client.new_mailbox("Alice", PASSWORD), 409, 183, "already exists"),
            (lambda: client.new_mailbox("a b", PASSWORD), 422, 87, "mailbox name"),
            (lambda: client.new_mailbox("carol", ""), 422, 87, "must not be empty"),
            (lambda: client.new_mailbox("carol", PASSWORD, None, "ghost"), 404, 1168, "ghost"),
            (lambda: client.mailbox("ghost"), 404, 1317, "There is no mailbox 'ghost'"),
            (lambda: client.remove_mailbox("Administrator"), 409, 1373, "cannot be removed"),
        ]:
            error = refusal(call)
            assert (error.status, error.code) == (status, code)
            assert message in str(error)

        # Passwords: the new one logs in over HTTPS, and no log holds it.
        client.set_mailbox_password("alice", NEW_PASSWORD)
        client.add_role_group_member("View-Only Organization Management", "alice@contoso.com")
        with https_client(installation, "alice", NEW_PASSWORD) as web:
            assert web.whoami()["role_groups"] == ["View-Only Organization Management"]

        # Per-mailbox POP3 settings.
        cas = client.cas_mailbox("alice")
        defaults = CasMailboxSettings().to_json(full=True)
        assert cas == {
            "name": "alice",
            "address": "alice@contoso.com",
            **{CasMailboxSettings.EXCHANGE_NAMES[k]: v for k, v in defaults.items()},
        }
        assert cas["PopMessagesRetrievalMimeFormat"] == "BestBodyFormat"
        changed = client.set_cas_mailbox(
            "alice@contoso.com",
            {
                "popenabled": False,
                "PopUseProtocolDefaults": "$false",
                "PopMessagesRetrievalMimeFormat": 0,
                "PopSuppressReadReceipt": True,
            },
        )
        assert client.cas_mailbox("alice") == changed
        assert (changed["PopEnabled"], changed["PopUseProtocolDefaults"]) == (False, False)
        assert changed["PopMessagesRetrievalMimeFormat"] == "TextOnly"
        assert client.mailbox("alice")["pop_enabled"] is False
        invalid_cas: list[tuple[dict[str, object], str]] = [
            ({"PopEnabled": "perhaps"}, r"PopEnabled must be $true or $false; got 'perhaps'."),
            ({"PopMessagesRetrievalMimeFormat": "Rtf", "PopEnabled": True}, "got 'Rtf'"),
            ({"ImapEnabled": False}, "is not a POP3 setting of mailboxes"),
        ]
        for changes, message in invalid_cas:
            error = refusal(partial(client.set_cas_mailbox, "alice", changes))
            assert (error.status, error.code) == (422, 87)
            assert message in str(error)
        assert client.cas_mailbox("alice") == changed
        assert refusal(lambda: client.cas_mailbox("ghost")).status == 404

        # Role groups: names ignore case, members are mailboxes.
        group = "organization management"
        assert client.role_group_members(group) == ["Administrator"]
        assert client.add_role_group_member(group, "BOB") == ["Administrator", "bob"]
        assert client.add_role_group_member(group, "bob") == ["Administrator", "bob"]
        assert client.remove_role_group_member(group, bob["address"]) == ["Administrator"]
        error = refusal(lambda: client.remove_role_group_member(group, "bob"))
        assert (error.status, error.code) == (404, 1321)
        error = refusal(lambda: client.add_role_group_member(group, "ghost"))
        assert (error.status, error.code) == (404, 1317)
        error = refusal(lambda: client.role_group_members("Help Desk"))
        assert (error.status, error.code) == (404, 1319)
        assert "Organization Management, Server Management" in str(error)
        assert "Recipient Management" in str(error)

        servers = client.servers()
        assert [s["name"] for s in servers] == [server]
        assert servers[0]["roles"] == ["ClientAccess", "Mailbox"]
        assert set(servers[0]) == {"name", "fqdn", "roles", "proxy_host", "control_url"}

        # Removing a mailbox removes its mail and its role-group memberships.
        removed = client.remove_mailbox("alice@contoso.com")
        assert removed["guid"] == alice["guid"]
        assert not (installation.layout.mail_root / alice["guid"]).exists()
        assert refusal(lambda: client.mailbox("alice")).status == 404
        assert client.role_group_members("View-Only Organization Management") == []

        entries = client.search_audit(result_size=100)
        actions = {(e["action"], e["result"]) for e in entries}
        for action in (
            "New-Mailbox",
            "Set-Mailbox",
            "Set-CASMailbox",
            "Add-RoleGroupMember",
            "Remove-RoleGroupMember",
            "Remove-Mailbox",
        ):
            assert (action, "Success") in actions
        new_alice = [e for e in audit_of(client, "New-Mailbox") if e["target"] == "alice"]
        assert new_alice[0]["detail"] == (
            f"Name=alice; PrimarySmtpAddress=alice@contoso.com; Server={server}; "
            "Password (not recorded)"
        )
    for text in (installation.layout.log_dir / "host.log").read_text(), repr(entries):
        assert PASSWORD not in text
        assert NEW_PASSWORD not in text


def test_https_callers_get_what_their_role_groups_allow(installation: Installation) -> None:
    start = datetime.datetime.now(datetime.UTC)
    for name in ("viewer", "recipients", "operator"):
        installation.add_mailbox(name, PASSWORD)
    installation.start_host()
    server = installation.layout.server_name
    with client_of(installation) as root:
        root.add_role_group_member("View-Only Organization Management", "viewer")
        root.add_role_group_member("Recipient Management", "recipients")
        root.add_role_group_member("Server Management", "operator")

    # View-Only Organization Management reads everything and changes nothing.
    with https_client(installation, "viewer") as viewer:
        assert viewer.get_pop_settings()["server"] == server
        assert {m["name"] for m in viewer.mailboxes()} >= {"viewer", "recipients"}
        assert viewer.mailbox("operator")["name"] == "operator"
        assert viewer.cas_mailbox("operator")["PopEnabled"] is True
        assert viewer.role_group_members("Server Management") == ["operator"]
        assert viewer.servers()[0]["name"] == server
        assert viewer.search_audit(result_size=1)
        group = "Server Management"
        changes: list[tuple[str, Callable[[], object]]] = [
            ("Set-PopSettings", lambda: viewer.set_pop_settings({"Banner": "mine"})),
            ("New-Mailbox", lambda: viewer.new_mailbox("intruder", PASSWORD)),
            ("Remove-Mailbox", lambda: viewer.remove_mailbox("operator")),
            ("Set-Mailbox", lambda: viewer.set_mailbox_password("operator", PASSWORD)),
            ("Set-CASMailbox", lambda: viewer.set_cas_mailbox("operator", {"PopEnabled": 0})),
            ("Add-RoleGroupMember", lambda: viewer.add_role_group_member(group, "viewer")),
            ("Remove-RoleGroupMember", lambda: viewer.remove_role_group_member(group, "operator")),
        ]
        for _action, change in changes:
            error = refusal(change)
            assert (error.status, error.code, str(error)) == (403, 5, "Access is denied.")

    # Recipient Management provisions mailboxes but not POP3 settings or role groups, and may
    # not take over an administrator's mailbox.
    with https_client(installation, "recipients") as recipients:
        created = recipients.new_mailbox("dave", PASSWORD)
        assert created["name"] == "dave"
        recipients.set_mailbox_password("dave", NEW_PASSWORD)
        assert recipients.set_cas_mailbox("dave", {"PopEnabled": False})["PopEnabled"] is False
        # Reading POP3 settings is not theirs either (exchange-pop3.md section 4).
        assert refusal(recipients.get_pop_settings).status == 403
        for change in (
            lambda: recipients.set_pop_settings({"MaxCommandSize": 100}),
            lambda: recipients.add_role_group_member("Organization Management", "dave"),
            lambda: recipients.set_mailbox_password("Administrator", PASSWORD),
            lambda: recipients.set_mailbox_password("operator", PASSWORD),
            lambda: recipients.remove_mailbox("viewer"),
        ):
            error = refusal(change)
            assert (error.status, error.code) == (403, 5)
        assert "member of a management role group" in str(error)
        recipients.remove_mailbox("dave")

    # Server Management changes POP3 settings, and only reads mailboxes.
    with https_client(installation, "operator") as operator:
        assert operator.set_pop_settings({"MaxCommandSize": 100})["restart_needed"]
        assert operator.mailbox("viewer")["name"] == "viewer"
        assert refusal(lambda: operator.new_mailbox("erin", PASSWORD)).status == 403
    with https_client(installation, "operator", "wrong") as stranger:
        assert refusal(stranger.servers).status == 401

    with client_of(installation) as root:
        denied = root.search_audit(user_ids=["VIEWER"])
        assert sorted(e["action"] for e in denied) == sorted(action for action, _ in changes)
        assert {e["result"] for e in denied} == {"Denied"}
        assert all(e["origin"].startswith("https 127.0.0.1") for e in denied)

        # Search-AdminAuditLog: cmdlets and users ignore case; dates bound; newest first.
        mine = root.search_audit(cmdlets=["new-mailbox", "REMOVE-MAILBOX"], user_ids=["recipients"])
        assert [(e["action"], e["target"], e["result"]) for e in mine] == [
            ("Remove-Mailbox", "dave", "Success"),
            ("Remove-Mailbox", "viewer", "Denied"),
            ("New-Mailbox", "dave", "Success"),
        ]
        assert (
            root.search_audit(cmdlets=["New-Mailbox"], user_ids=["recipients"], result_size=1)[0][
                "target"
            ]
            == "dave"
        )
        newest = mine[0]["at"]
        assert root.search_audit(start=newest, user_ids=["recipients"]) == mine[:1]
        earlier = root.search_audit(end=start)
        assert all(datetime.datetime.fromisoformat(e["at"]) <= start for e in earlier)
        since = root.search_audit(start=start, end=datetime.datetime.now(datetime.UTC))
        assert {e["at"] for e in denied + mine} <= {e["at"] for e in since}
        assert not {e["at"] for e in earlier} & {e["at"] for e in since}
        assert [e["at"] for e in since] == sorted((e["at"] for e in since), reverse=True)
        error = refusal(
            lambda: root.search_audit(start="2025-02-01T00:00:00Z", end="2025-01-01T00:00:00")
        )
        assert (error.status, error.code) == (422, 87)
        assert "is after the end date" in str(error)


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    """An mbox file of ``messages``, written by the stdlib."""
    box = mailbox.mbox(path)
    for content in messages:
        box.add(content)
    box.close()
    return path


def message_count(installation: Installation, guid: str) -> int:
    """How many messages the mailbox ``guid`` holds in this server's store."""
    store = MaildirStore(installation.layout.mail_root)
    return asyncio.run(store.stats(uuid.UUID(guid)))[0]


def add_server(installation: Installation, name: str) -> None:
    """Register another Mailbox server in the installation's directory."""

    async def add() -> None:
        directory = await Directory.connect(installation.layout.directory_url)
        try:
            await directory.add_server(name, fqdn=f"{name}.contoso.com", roles=[Role.MAILBOX])
        finally:
            await directory.close()

    asyncio.run(add())


def raw_request(installation: Installation, head: str) -> tuple[int, dict[str, Any]]:
    """Send a request head (no body) on the control socket as root; status and JSON answer."""
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(30)
        raw.connect(str(control_socket_path(installation.layout)))
        raw.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += raw.recv(65536)
        header, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", header)[1])  # type: ignore[index]
        while len(body) < length:
            body += raw.recv(65536)
    return int(header.split()[1]), json.loads(body)


def test_import_uploads_eml_and_mbox_files(installation: Installation, tmp_path: Path) -> None:
    for name in ("viewer", "recipients"):
        installation.add_mailbox(name, PASSWORD)
    add_server(installation, "mbx2")
    installation.start_host()
    mbox = write_mbox(tmp_path / "Inbox.mbox", MESSAGES[:3])
    eml = tmp_path / "one.eml"
    eml.write_bytes(MESSAGES[3])
    with client_of(installation) as root:
        root.add_role_group_member("View-Only Organization Management", "viewer")
        root.add_role_group_member("Recipient Management", "recipients")
        # mbx2 holds fewer mailboxes, so alice goes here only when asked to.
        alice = root.new_mailbox("alice", PASSWORD, None, installation.layout.server_name)
        result = root.import_messages("alice", [mbox, eml])
        assert result == {
            "name": "alice",
            "imported": 4,
            "files": [{"file": "Inbox.mbox", "messages": 3}, {"file": "one.eml", "messages": 1}],
        }
        assert message_count(installation, alice["guid"]) == 4
        entry = audit_of(root, "New-MailboxImportRequest")[0]
        assert (entry["target"], entry["result"]) == ("alice", "Success")
        assert entry["detail"] == "Count=4; FilePath=Inbox.mbox,one.eml"

        # Every file is checked before anything is delivered.
        (tmp_path / "notes.txt").write_text("hello")
        (tmp_path / "plain.mbox").write_bytes(b"Subject: not an mbox\n\nbody\n")
        (tmp_path / "empty.eml").write_bytes(b"")
        invalid = [
            ("notes.txt", "notes.txt is neither an .eml file (one message) nor an .mbox file"),
            ("plain.mbox", "plain.mbox is not an mbox file: it does not start with a 'From '"),
            ("empty.eml", "empty.eml is empty; an .eml file holds one message"),
        ]
        for name, message in invalid:
            error = refusal(partial(root.import_messages, "alice", [eml, tmp_path / name]))
            assert (error.status, error.code) == (422, 87)
            assert message in str(error)
        assert message_count(installation, alice["guid"]) == 4
        assert audit_of(root, "New-MailboxImportRequest")[0]["result"] == "Refused"

        error = refusal(lambda: root.import_messages("ghost", [eml]))
        assert (error.status, error.code) == (404, 1317)
        root.new_mailbox("remote", PASSWORD, None, "mbx2")
        error = refusal(lambda: root.import_messages("remote", [eml]))
        assert (error.status, error.code) == (409, 50)
        assert "The mail of remote is on server mbx2, not on this server" in str(error)

        # The size limit holds before the upload is read: a Content-Length is enough.
        status, answer = raw_request(
            installation,
            "POST /api/v1/mailboxes/alice/import HTTP/1.1\nHost: popgate\n"
            "Content-Type: multipart/form-data; boundary=x\nContent-Length: 1073741825\n",
        )
        assert (status, answer["error"]["code"]) == (413, 223)
        assert "larger than 1 GB, the most one import takes" in answer["error"]["message"]
        status, answer = raw_request(
            installation,
            "POST /api/v1/mailboxes/alice/import HTTP/1.1\nHost: popgate\n"
            "Content-Type: text/plain\nContent-Length: 0\n",
        )
        assert (status, answer["error"]["code"]) == (422, 87)
        assert "as multipart/form-data in the field 'files'" in answer["error"]["message"]

        # An upload cut short is refused and audited, and delivers nothing.
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(control_socket_path(installation.layout)))
            raw.sendall(
                b"POST /api/v1/mailboxes/alice/import HTTP/1.1\r\nHost: popgate\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000\r\n\r\n"
                b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.eml"\r\n\r\n'
            )
        deadline = time.monotonic() + 10
        while (entry := audit_of(root, "New-MailboxImportRequest")[0])["result"] != "Refused" or (
            "ended before it was complete" not in entry["detail"]
        ):
            assert time.monotonic() < deadline, entry
            time.sleep(0.05)
        assert message_count(installation, alice["guid"]) == 4

    # Importing is a change of mailboxes: Recipient Management may, View-Only may not.
    with https_client(installation, "recipients") as recipients:
        assert recipients.import_messages("alice", [eml])["imported"] == 1
    with https_client(installation, "viewer") as viewer:
        error = refusal(lambda: viewer.import_messages("alice", [eml]))
        assert (error.status, error.code, str(error)) == (403, 5, "Access is denied.")
    assert message_count(installation, alice["guid"]) == 5
    with client_of(installation) as root:
        denied = root.search_audit(cmdlets=["New-MailboxImportRequest"], user_ids=["viewer"])
        assert [e["result"] for e in denied] == ["Denied"]
