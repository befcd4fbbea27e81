"""Client Access and Mailbox roles on separate computers, sharing a PostgreSQL directory.

alice lives on mbx1 and bob on mbx2. Clients in the root namespace read both through either
front end (cas1, cas2): the front end logs the user on against the directory, finds the
mailbox's server there and relays the session to that server's MSExchangePOP3BE over TLS on
ProxyTargetPort. A Mailbox server whose backend is stopped costs its own users a
``[SYS/TEMP]`` and nobody else anything, and they are back as soon as it starts again.
"""

from __future__ import annotations

import poplib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from popgate.host._client import HostClient
from tests.multi.conftest import (
    CLIENT_ACCESS,
    HTTPS_PORT,
    POP3_PORT,
    POP3S_PORT,
    SERVERS,
    Organization,
    insecure_client_context,
)

#: Each mailbox and the Mailbox server that holds it.
USERS = {"alice": "mbx1", "bob": "mbx2"}
PASSWORDS = {"alice": "alice's long passphrase", "bob": "bob's long passphrase"}
#: STLS on 110, implicit TLS on 995 (LoginType SecureLogin: nothing logs on in the clear).
TLS_MODES = ("stls", "implicit")
SYS_TEMP = b"-ERR [SYS/TEMP] "

Delivered = dict[str, dict[str, bytes]]


def _message(sender: str, to: str, subject: str, *body: bytes) -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n".encode()
    body_text = b"".join(line + b"\r\n" for line in body)
    return head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body_text


# Distinct messages for each mailbox: lines that start with a dot (stuffed on the wire from
# backend to front end and from front end to client), 8-bit text, and one message big
# enough that the front end relays it in many chunks.
MESSAGES: dict[str, list[bytes]] = {
    "alice": [
        _message("carol@example.org", "alice@popgate.test", "alice 1: hello", b"Hello alice."),
        _message(
            "dave@example.org",
            "alice@popgate.test",
            "alice 2: dots",
            b".a line that starts with a dot",
            b"..and one with two",
            b".",
        ),
        _message(
            "erin@example.org",
            "alice@popgate.test",
            "alice 3: big",
            *(f"line {n:05d} of alice's big message ".encode() + b"x" * 60 for n in range(3000)),
        ),
    ],
    "bob": [
        _message("carol@example.org", "bob@popgate.test", "bob 1: hello", b"Hello bob."),
        _message(
            "dave@example.org",
            "bob@popgate.test",
            "bob 2: Gr\u00fc\u00dfe",
            "Viele Gr\u00fc\u00dfe aus K\u00f6ln, \u65e5\u672c\u8a9e".encode(),
        ),
    ],
}
#: bob's third message comes through ``popgate deliver`` (an MTA's pipe), which reports no
#: UIDL; the others by LMTP, whose ``250 ... Saved as <UIDL>`` does.
PIPED = _message("frank@example.org", "bob@popgate.test", "bob 3: piped", b"Through a pipe.")


def stored_messages(org: Organization, server: str) -> set[bytes]:
    """Every message file in the Maildirs of ``server``'s own data directory."""
    mail = org.layout(server).mail_root
    return {path.read_bytes() for path in mail.rglob("*") if path.parent.name in ("new", "cur")}


@pytest.fixture(scope="module")
def delivered(organization: Organization) -> Delivered:
    """alice made on mbx1 and bob on mbx2 (each on its own server), with their messages
    delivered there; each user's LMTP-delivered messages by the UIDL the delivery reported."""
    org = organization
    uidls: Delivered = {}
    for user, server in USERS.items():
        org.add_mailbox(server, user, PASSWORDS[user])
        reported = org.deliver(server, user, MESSAGES[user])
        assert len(set(reported)) == len(MESSAGES[user])
        uidls[user] = dict(zip(reported, MESSAGES[user], strict=True))
    org.popgate("mbx2", "deliver", "-f", "frank@example.org", "bob", input=PIPED.decode())
    # Each maildrop is on its own Mailbox server's disk, and only there.
    assert stored_messages(org, "mbx1") == set(MESSAGES["alice"])
    assert stored_messages(org, "mbx2") == {*MESSAGES["bob"], PIPED}
    return uidls


def assert_mailbox(user: str, read: dict[str, bytes], delivered: Delivered) -> None:
    """What a client read (message by UIDL) is what was delivered to ``user``: the LMTP
    deliveries under the UIDLs they reported, byte for byte, and, for bob, the piped one."""
    assert {uidl: read.get(uidl) for uidl in delivered[user]} == delivered[user]
    others = [content for uidl, content in read.items() if uidl not in delivered[user]]
    assert others == ([PIPED] if user == "bob" else [])


@contextmanager
def pop3(org: Organization, front_end: str, tls: str) -> Iterator[poplib.POP3]:
    """A POP3 session with ``front_end`` from the root namespace, in TLS (STLS on 110, or
    implicit on 995); closed afterwards, whatever happened."""
    address = org.address(front_end)
    client: poplib.POP3
    if tls == "stls":
        client = poplib.POP3(address, POP3_PORT, timeout=30)
    else:
        context = insecure_client_context()
        client = poplib.POP3_SSL(address, POP3S_PORT, timeout=30, context=context)
    try:
        if tls == "stls":
            client.stls(insecure_client_context())
        yield client
    finally:
        client.close()


def read_mailbox(org: Organization, front_end: str, tls: str, user: str) -> dict[str, bytes]:
    """Log on as ``user`` through ``front_end``, RETR everything and QUIT: each message as
    RETR returned it (CRLF lines, dot-stuffing undone), by UIDL."""
    with pop3(org, front_end, tls) as client:
        client.user(user)
        client.pass_(PASSWORDS[user])
        sizes = {int(number): int(size) for number, size in map(bytes.split, client.list()[1])}
        uidls = {int(number): uidl.decode() for number, uidl in map(bytes.split, client.uidl()[1])}
        assert sorted(sizes) == sorted(uidls)
        messages = {}
        for number, uidl in uidls.items():
            content = b"".join(line + b"\r\n" for line in client.retr(number)[1])
            assert len(content) == sizes[number], (uidl, len(content), sizes[number])
            messages[uidl] = content
        client.quit()
    return messages


def refused_login(org: Organization, front_end: str, tls: str, user: str) -> bytes:
    """The reply to ``user``'s PASS through ``front_end``, which must be an error."""
    with pop3(org, front_end, tls) as client:
        client.user(user)
        with pytest.raises(poplib.error_proto) as refused:
            client.pass_(PASSWORDS[user])
        client.quit()
    reply: bytes = refused.value.args[0]
    return reply


def test_every_host_serves_one_organization_over_https(
    organization: Organization, delivered: Delivered
) -> None:
    org = organization
    expected = {
        server: {"fqdn": org.fqdn(server), "roles": [roles], "proxy_host": org.fqdn(server)}
        for server, (roles, _) in SERVERS.items()
    }
    for server in SERVERS:
        # The Administrator made by the first computer, on each computer's control API.
        url = f"https://{org.address(server)}:{HTTPS_PORT}"
        with HostClient.remote(
            url, user="Administrator", password=org.administrator_password, verify=False
        ) as client:
            servers = {
                view["name"]: {key: view[key] for key in ("fqdn", "roles", "proxy_host")}
                for view in client.servers()
            }
            assert servers == expected
            assert {user: client.mailbox(user)["server"] for user in USERS} == USERS


@pytest.mark.parametrize("tls", TLS_MODES)
def test_poplib_reads_both_mailbox_servers_through_both_front_ends(
    organization: Organization, delivered: Delivered, tls: str
) -> None:
    for user in USERS:
        through = {cas: read_mailbox(organization, cas, tls, user) for cas in CLIENT_ACCESS}
        for read in through.values():
            assert_mailbox(user, read, delivered)
        # Same messages, same numbers, same UIDLs, whichever front end the client picks.
        assert through["cas1"] == through["cas2"]
        assert list(through["cas1"]) == list(through["cas2"])


def fetchmail(
    org: Organization, front_end: str, tls: str, user: str, folder: Path, idfile: Path
) -> tuple[subprocess.CompletedProcess[str], list[bytes]]:
    """fetchmail (UIDL, keep) through ``front_end`` into an MDA that writes each message to a
    file; its run and the messages it delivered this time."""
    out = folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    port, implicit = (POP3_PORT, "") if tls == "stls" else (POP3S_PORT, " ssl")
    rc = folder / "fetchmailrc"
    rc.write_text(
        f"poll pop.popgate.test via {org.address(front_end)} service {port} protocol POP3 uidl\n"
        f'  user {user} password "{PASSWORDS[user]}" is root here\n'
        f"  sslproto tls1.2+{implicit} no sslcertck keep\n"
        f"  mda \"/bin/sh -c 'cat > $(mktemp {out}/msg.XXXXXX)'\"\n"
    )
    rc.chmod(0o600)
    # --invisible: no Received header of fetchmail's own, so the message arrives as it is.
    result = subprocess.run(
        ["fetchmail", "-f", str(rc), "-v", "--nodetach", "--invisible", "--idfile", str(idfile),
         "--pidfile", str(folder / "pid")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result, sorted(path.read_bytes() for path in set(out.iterdir()) - before)


@pytest.mark.parametrize("user", USERS)
def test_fetchmail_through_both_front_ends_keeps_and_then_finds_nothing_new(
    organization: Organization, delivered: Delivered, user: str, tmp_path: Path
) -> None:
    org = organization
    # What the MDA gets: the message with LF line ends (fetchmail's local convention).
    expected = sorted(m.replace(b"\r\n", b"\n") for m in [*delivered[user].values()] + (
        [PIPED] if user == "bob" else []))  # fmt: skip
    ids = tmp_path / "ids"

    first, fetched = fetchmail(org, "cas1", "stls", user, tmp_path / "cas1", ids)
    transcript = first.stdout + first.stderr
    assert first.returncode == 0, transcript
    assert "POP3> STLS" in transcript
    assert "POP3> UIDL" in transcript
    assert fetched == expected
    assert ids.read_text().count(f"{user}@{org.address('cas1')} ") == len(expected)

    again, fetched = fetchmail(org, "cas1", "stls", user, tmp_path / "cas1", ids)
    assert again.returncode == 1, again.stdout + again.stderr  # 1: no new mail
    assert fetched == []

    # fetchmail keys the UIDs it keeps by server address: hand cas1's to cas2, as when the
    # client's POP3 name moves to the other front end. Nothing is new there either.
    ids.write_text(ids.read_text().replace(f"@{org.address('cas1')} ", f"@{org.address('cas2')} "))
    moved, fetched = fetchmail(org, "cas2", "implicit", user, tmp_path / "cas2", ids)
    assert moved.returncode == 1, moved.stdout + moved.stderr
    assert fetched == []

    # And a client new to cas2 gets every message, the same ones, over implicit TLS.
    fresh, fetched = fetchmail(org, "cas2", "implicit", user, tmp_path / "fresh", tmp_path / "new")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert fetched == expected


def test_a_stopped_backend_fails_only_its_own_users_and_starting_it_heals(
    organization: Organization, delivered: Delivered
) -> None:
    org = organization
    before = {server: org.services(server) for server in SERVERS}
    hosts = {server: process.pid for server, process in org.hosts.items()}

    stopped = org.net("mbx2", "stop", "MSExchangePOP3BE")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    try:
        assert org.services("mbx2")["MSExchangePOP3BE"]["status"] == "Stopped"
        for cas in CLIENT_ACCESS:
            for tls in TLS_MODES:
                reply = refused_login(org, cas, tls, "bob")
                assert reply.startswith(SYS_TEMP), (cas, tls, reply)
                assert_mailbox("alice", read_mailbox(org, cas, tls, "alice"), delivered)
    finally:
        started = org.net("mbx2", "start", "MSExchangePOP3BE")
    assert started.returncode == 0, started.stdout + started.stderr

    # Nothing else was restarted: the front ends and hosts are the same processes.
    for cas in CLIENT_ACCESS:
        for tls in TLS_MODES:
            assert_mailbox("bob", read_mailbox(org, cas, tls, "bob"), delivered)
    after = {server: org.services(server) for server in SERVERS}
    for server, services in before.items():
        for name, view in services.items():
            if (server, name) == ("mbx2", "MSExchangePOP3BE"):
                assert after[server][name]["pid"] != view["pid"]
            else:
                assert (after[server][name]["pid"], after[server][name]["since"]) == (
                    view["pid"], view["since"]
                ), (server, name)  # fmt: skip
            assert after[server][name]["status"] == "Running"
    for server, process in org.hosts.items():
        assert process.poll() is None
        assert process.pid == hosts[server]
