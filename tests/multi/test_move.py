"""Moving a mailbox between Mailbox servers (``popgate mailbox move``, New-MoveRequest).

A move keeps every message and every UIDL, so a client that keeps mail on the server
downloads nothing twice; mail delivered while the mailbox moves lands exactly once; and a
move whose target's host is killed half way goes on when that host runs again, losing and
duplicating nothing.
"""

from __future__ import annotations

import json
import os
import poplib
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from tests.multi.conftest import POP3S_PORT, Organization, insecure_client_context

PASSWORD = "a long passphrase for moving"

# Delivers one message by LMTP to 127.0.0.1:24 inside a namespace; prints [code, text].
LMTP_ONE = """
import json, smtplib, sys
request = json.load(sys.stdin)
with smtplib.LMTP("127.0.0.1", 24, timeout=60) as lmtp:
    lmtp.ehlo()
    lmtp.mail("load@example.org")
    code, text = lmtp.rcpt(request["recipient"])
    if code == 250:
        code, text = lmtp.data(request["message"].encode())
print(json.dumps([code, text.decode("utf-8", "replace")]))
"""


def message(mailbox: str, n: int, size: int = 0) -> bytes:
    head = f"From: load@example.org\r\nTo: {mailbox}@popgate.test\r\nSubject: {mailbox} {n}\r\n"
    filler = "".join(f"{mailbox} {n} line {line:04d} {'x' * 60}\r\n" for line in range(size // 80))
    return (head + f"\r\nmessage {n} for {mailbox}\r\n" + filler).encode()


def holder(org: Organization, mailbox: str) -> str:
    """The Mailbox server that holds ``mailbox``, as the directory says now."""
    with org.control("cas1") as client:
        return str(client.mailbox(mailbox)["server"])


def deliver_anywhere(org: Organization, mailbox: str, content: bytes) -> str:
    """Deliver as an MTA does: to the holder's LMTP, again later (and to the new holder)
    while the answer is 4xx; the UIDL of the 250 reply."""
    deadline = time.monotonic() + 90
    while True:
        server = holder(org, mailbox)
        result = org.run(
            server,
            sys.executable,
            "-c",
            LMTP_ONE,
            input=json.dumps({"recipient": mailbox, "message": content.decode()}),
        )
        code, text = json.loads(result.stdout)
        if code == 250:
            saved = re.search(r"Saved as (\S+)", text)
            assert saved, text
            return saved.group(1)
        assert 400 <= code < 500, f"{server}: {code} {text}"
        assert time.monotonic() < deadline, f"{server} kept answering {code} {text}"
        time.sleep(0.2)


def session(org: Organization, front_end: str, mailbox: str) -> poplib.POP3:
    """A POP3 session for ``mailbox`` through ``front_end`` (implicit TLS on 995)."""
    client = poplib.POP3_SSL(
        org.address(front_end), POP3S_PORT, context=insecure_client_context(), timeout=60
    )
    client.user(mailbox)
    client.pass_(PASSWORD)
    return client


def uidls(org: Organization, front_end: str, mailbox: str) -> list[str]:
    client = session(org, front_end, mailbox)
    try:
        return [line.split()[1].decode() for line in client.uidl()[1]]
    finally:
        client.quit()


def contents(org: Organization, front_end: str, mailbox: str) -> dict[str, bytes]:
    """Every message by UIDL, as RETR gives it (lines joined with CRLF)."""
    client = session(org, front_end, mailbox)
    try:
        found = {}
        for line in client.uidl()[1]:
            number, uid = line.split()
            found[uid.decode()] = b"\r\n".join(client.retr(int(number))[1]) + b"\r\n"
        return found
    finally:
        client.quit()


def maildir(org: Organization, server: str, guid: str) -> Path:
    return org.layout(server).mail_root / guid


def files_in(folder: Path) -> int:
    return sum(len(os.listdir(folder / sub)) for sub in ("new", "cur") if (folder / sub).is_dir())


def guid_of(org: Organization, mailbox: str) -> str:
    with org.control("cas1") as client:
        return str(uuid.UUID(str(client.mailbox(mailbox)["guid"])))


def kill_host(org: Organization, server: str) -> None:
    """SIGKILL the computer's host and the services it runs, as a power cut would."""
    host = org.hosts[server]
    subprocess.run(["pkill", "-KILL", "-P", str(host.pid)], check=False)
    host.send_signal(signal.SIGKILL)
    host.wait(timeout=30)


def test_a_mailbox_moves_under_delivery_load_keeping_every_message_and_uidl(
    organization: Organization,
) -> None:
    org = organization
    org.add_mailbox("mbx1", "carol", PASSWORD)
    assert holder(org, "carol") == "mbx1"
    first = org.deliver("mbx1", "carol", [message("carol", n, 3000) for n in range(20)])
    expected = {uid: message("carol", n, 3000) for n, uid in enumerate(first)}
    # A client that keeps mail on the server has downloaded everything so far.
    kept = set(uidls(org, "cas1", "carol"))
    assert kept == set(first)

    delivered: dict[str, bytes] = {}
    stop = threading.Event()
    failures: list[BaseException] = []

    def load() -> None:
        n = 1000
        try:
            while not stop.is_set():
                content = message("carol", n)
                delivered[deliver_anywhere(org, "carol", content)] = content
                n += 1
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        time.sleep(1.5)
        moved = org.popgate("cas1", "mailbox", "move", "carol", "--to", "mbx2")
        time.sleep(1.5)
    finally:
        stop.set()
        loader.join(timeout=120)
    assert not failures, failures
    assert "mbx1 -> mbx2: Completed" in moved.stdout, moved.stdout
    assert holder(org, "carol") == "mbx2"
    assert len(delivered) >= 5  # the load ran before, during and after the move

    expected.update(delivered)
    for front_end in ("cas1", "cas2"):
        listing = uidls(org, front_end, "carol")
        assert Counter(listing) == Counter(expected.keys()), "lost or duplicated messages"
    assert contents(org, "cas2", "carol") == {
        uid: content if content.endswith(b"\r\n") else content + b"\r\n"
        for uid, content in expected.items()
    }
    # The client that kept its mail gets only what arrived since, not one message twice.
    assert set(uidls(org, "cas1", "carol")) - kept == set(delivered)
    guid = guid_of(org, "carol")
    assert not maildir(org, "mbx1", guid).exists()
    assert files_in(maildir(org, "mbx2", guid)) == len(expected)
    with org.control("cas1") as client:
        assert client.move_request("carol")["status"] == "Completed"
    listed = org.popgate("cas1", "shell", "-c", "Get-MoveRequest carol | Format-List").stdout
    assert re.search(r"DisplayName\s*: carol\s+Name\s*: carol\s+Status\s*: Completed", listed)


def test_a_move_whose_target_host_is_killed_half_way_resumes_and_loses_nothing(
    organization: Organization,
) -> None:
    org = organization
    org.add_mailbox("mbx1", "dave", PASSWORD)
    count = 600
    org.deliver("mbx1", "dave", [message("dave", n, 6000) for n in range(count)])
    before = contents(org, "cas1", "dave")
    assert len(before) == count
    guid = guid_of(org, "dave")
    target = maildir(org, "mbx2", guid)

    org.popgate("cas1", "mailbox", "move", "dave", "--to", "mbx2", "--no-wait")
    deadline = time.monotonic() + 60
    while files_in(target) < count // 6:
        assert time.monotonic() < deadline, "the copy did not begin"
        time.sleep(0.01)
    kill_host(org, "mbx2")
    copied = files_in(target)
    assert 0 < copied < count, f"killed too late to test anything: {copied} of {count} copied"

    # Until the move goes on, mbx1 serves dave in full.
    with org.control("cas1") as client:
        assert client.move_request("dave")["status"] == "InProgress"
    assert holder(org, "dave") == "mbx1"
    assert uidls(org, "cas2", "dave") == list(before)

    # mbx2's host runs again and takes the move up by itself.
    org.start_host("mbx2")
    org.wait_for_host("mbx2")
    assert org.net("mbx2", "start", "MSExchangePOP3BE").returncode == 0
    followed = org.popgate("cas1", "mailbox", "move", "dave")
    assert "Completed" in followed.stdout, followed.stdout + org.logs()
    assert holder(org, "dave") == "mbx2"
    after = contents(org, "cas2", "dave")
    assert list(after) == list(before)  # every UIDL, in the same order
    assert after == before
    assert files_in(target) == count
    assert not maildir(org, "mbx1", guid).exists()


def wait_for_the_session(org: Organization, mailbox: str) -> dict[str, object]:
    """Until the move of ``mailbox`` says it waits for a POP3 session; the move."""
    deadline = time.monotonic() + 30
    while True:
        with org.control("cas1") as client:
            move = client.move_request(mailbox)
        if "POP3 session" in str(move["detail"]):
            return move
        assert time.monotonic() < deadline, move
        time.sleep(0.1)


def test_a_mailbox_in_a_pop3_session_moves_when_the_session_ends(
    organization: Organization,
) -> None:
    org = organization
    org.add_mailbox("mbx1", "erin", PASSWORD)
    uids = org.deliver("mbx1", "erin", [message("erin", n) for n in range(3)])
    reader = session(org, "cas1", "erin")
    org.popgate("cas1", "mailbox", "move", "erin", "--to", "mbx2", "--no-wait")
    assert wait_for_the_session(org, "erin")["status"] == "InProgress"
    # The session goes on, undisturbed, on mbx1, and its DELE applies at QUIT.
    assert [line.split()[1].decode() for line in reader.uidl()[1]] == uids
    reader.dele(1)
    reader.quit()
    followed = org.popgate("cas1", "mailbox", "move", "erin")
    assert "mbx1 -> mbx2: Completed" in followed.stdout, followed.stdout
    assert holder(org, "erin") == "mbx2"
    assert uidls(org, "cas2", "erin") == uids[1:]
    assert not maildir(org, "mbx1", guid_of(org, "erin")).exists()


def test_a_move_can_be_cancelled_before_the_switch(organization: Organization) -> None:
    org = organization
    org.add_mailbox("mbx1", "fred", PASSWORD)
    uids = org.deliver("mbx1", "fred", [message("fred", n) for n in range(3)])
    reader = session(org, "cas1", "fred")
    try:
        org.popgate("cas1", "mailbox", "move", "fred", "--to", "mbx2", "--no-wait")
        wait_for_the_session(org, "fred")
        cancelled = org.popgate("cas1", "mailbox", "move", "fred", "--cancel")
        assert "Cancelled the move of fred" in cancelled.stdout
    finally:
        reader.quit()
    assert holder(org, "fred") == "mbx1"
    assert uidls(org, "cas2", "fred") == uids
    assert not maildir(org, "mbx2", guid_of(org, "fred")).exists()
    refused = org.popgate("cas1", "mailbox", "move", "fred", check=False)
    assert refused.returncode != 0
    assert "There is no move request for 'fred'" in refused.stderr
    with org.control("cas1") as client:
        entries = client.search_audit(cmdlets=["Remove-MoveRequest"], result_size=1)
    assert (entries[0]["target"], entries[0]["result"]) == ("fred", "Success")
