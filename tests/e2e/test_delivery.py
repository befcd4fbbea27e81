"""MSExchangeDelivery and ``popgate deliver``: mail in, by LMTP from swaks and Python's
smtplib, and by pipe, read back through MSExchangePOP3; quotas, failures, SIGKILL."""

from __future__ import annotations

import os
import poplib
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from popgate.directory import Mailbox
from popgate.store import MaildirStore
from tests.e2e.conftest import Installation, free_port, insecure_client_context
from tests.e2e.test_admin_api import client_of
from tests.e2e.test_admin_api import refusal as api_refusal
from tests.e2e.test_backend import PASSWORD
from tests.e2e.test_control import directory_call
from tests.e2e.test_metrics import counters

DELIVERY = "MSExchangeDelivery"
MESSAGE = (
    b"From: Bob <bob@example.org>\r\nTo: alice@contoso.com\r\nSubject: by LMTP\r\n"
    b"Message-ID: <1@example.org>\r\n\r\nHello Alice,\r\n.a line that starts with a dot\r\n"
    b"\r\n--\r\nBob\r\n"
)


def retrieve_all(installation: Installation, user: str = "alice") -> list[bytes]:
    """Every message of ``user``, through the front end, in CRLF form."""
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(insecure_client_context())
    client.user(user)
    client.pass_(PASSWORD)
    count = client.stat()[0]
    messages = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
    client.quit()
    return messages


def maildir_of(installation: Installation, user: str = "alice") -> Path:
    """The Maildir folder of a mailbox."""
    mailbox = directory_call(installation, "get_mailbox", user)
    assert isinstance(mailbox, Mailbox)
    return MaildirStore(installation.layout.mail_root).mailbox_path(mailbox.guid)


def delivery_pid(installation: Installation, not_this: int | None = None) -> int:
    """The Running delivery service's process id (a new one, after ``not_this`` died)."""
    deadline = time.monotonic() + 60
    with client_of(installation) as host:
        while True:
            service = host.service(DELIVERY)
            pid = service["pid"]
            if service["status"] == "Running" and isinstance(pid, int) and pid != not_this:
                return pid
            assert time.monotonic() < deadline, service
            time.sleep(0.2)


@pytest.fixture
def receiving(installation: Installation) -> Installation:
    """A host with both POP3 services Running and MSExchangeDelivery (Automatic) Running."""
    installation.add_mailbox("alice", PASSWORD)
    installation.start_host()
    installation.wait_for_status(DELIVERY, "Running")
    for name in ("MSExchangePOP3BE", "MSExchangePOP3"):
        assert installation.net("start", name).returncode == 0
    return installation


def swaks(installation: Installation, to: str, data: Path) -> subprocess.CompletedProcess[str]:
    """swaks over LMTP to the delivery service's TCP port."""
    return subprocess.run(
        [
            "swaks",
            "--protocol",
            "LMTP",
            "--server",
            "127.0.0.1",
            "--port",
            str(installation.lmtp_port),
            "--from",
            "bob@example.org",
            "--to",
            to,
            "--data",
            f"@{data}",
            "--hide-informational",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_delivery_installs_automatic_and_runs_with_the_host(receiving: Installation) -> None:
    status = receiving.popgate("status").stdout
    rows = {line.split()[0]: line for line in status.splitlines()[1:] if line.strip()}
    assert "Microsoft Exchange Mailbox Transport Delivery" in rows[DELIVERY]
    assert rows[DELIVERY].split()[-2:] == ["Running", "Mailbox"]
    with client_of(receiving) as client:
        service = client.service(DELIVERY)
    assert service["startup_type"] == "Automatic"
    assert service["role"] == "Mailbox"


def test_swaks_gets_one_reply_per_recipient_and_pop3_reads_the_message_byte_exact(
    receiving: Installation, tmp_path: Path
) -> None:
    data = tmp_path / "message.eml"
    # swaks ends DATA with CRLF "." CRLF after the file's last byte: without its own last
    # CRLF the file goes out as exactly MESSAGE.
    data.write_bytes(MESSAGE.removesuffix(b"\r\n"))
    sent = swaks(receiving, "alice@localhost,ghost@localhost", data)
    transcript = sent.stdout
    # RCPT: one reply per recipient; DATA: one per accepted recipient (RFC 2033).
    assert "<-  250 2.1.5 <alice@localhost> Recipient ok" in transcript, transcript
    assert "<** 550 5.1.1 <ghost@localhost> No such mailbox here" in transcript, transcript
    assert "<-  250 2.0.0 <alice@localhost> Saved" in transcript, transcript
    assert retrieve_all(receiving) == [MESSAGE]
    with client_of(receiving) as host:
        assert counters(host)[DELIVERY]["deliveries"] == 1


def test_lmtp_on_the_unix_socket_sub_addressing_and_the_mailbox_name(
    receiving: Installation,
) -> None:
    socket_path = str(receiving.layout.lmtp_socket)
    with smtplib.LMTP(socket_path) as lmtp:
        lmtp.sendmail("bob@example.org", ["ALICE+lists@LocalHost"], MESSAGE)
        lmtp.sendmail("bob@example.org", ["alice"], MESSAGE)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            lmtp.sendmail("bob@example.org", ["alice@elsewhere.example"], MESSAGE)
    ((code, reply),) = refused.value.recipients.values()
    assert code == 550
    assert reply.startswith(b"5.1.1")
    assert retrieve_all(receiving) == [MESSAGE, MESSAGE]


def test_a_message_over_the_quota_is_refused_552_and_nothing_is_stored(
    receiving: Installation,
) -> None:
    receiving.popgate("mailbox", "set", "alice", "--quota", "1KB")
    big = MESSAGE + (b"x" * 70 + b"\r\n") * 30
    with smtplib.LMTP(str(receiving.layout.lmtp_socket)) as lmtp:
        lmtp.sendmail("bob@example.org", ["alice@localhost"], MESSAGE)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            lmtp.sendmail("bob@example.org", ["alice@localhost"], big)
    assert refused.value.smtp_code == 552
    assert (
        refused.value.smtp_error == b"5.2.2 <alice@localhost> Mailbox full: over its "
        b"ProhibitSendReceiveQuota"
    )
    assert retrieve_all(receiving) == [MESSAGE]
    receiving.popgate("mailbox", "set", "alice", "--quota", "unlimited")
    with smtplib.LMTP(str(receiving.layout.lmtp_socket)) as lmtp:
        lmtp.sendmail("bob@example.org", ["alice@localhost"], big)
    assert len(retrieve_all(receiving)) == 2


def test_a_store_failure_is_451_and_leaves_nothing_half_written(
    receiving: Installation,
) -> None:
    with smtplib.LMTP(str(receiving.layout.lmtp_socket)) as lmtp:
        lmtp.sendmail("bob@example.org", ["alice"], MESSAGE)  # the Maildir exists now
        maildir = maildir_of(receiving)
        # new/ replaced by a file: the rename into it fails, as on a broken disk.
        (maildir / "new").rename(maildir / "new.aside")
        (maildir / "new").write_bytes(b"")
        with pytest.raises(smtplib.SMTPDataError) as failed:
            lmtp.sendmail("bob@example.org", ["alice"], MESSAGE)
    assert failed.value.smtp_code == 451
    assert (
        failed.value.smtp_error == b"4.3.0 <alice> Temporary failure saving the message; "
        b"try again later"
    )
    assert list((maildir / "tmp").iterdir()) == []
    (maildir / "new").unlink()
    (maildir / "new.aside").rename(maildir / "new")
    assert len(retrieve_all(receiving)) == 1


def deliver(
    installation: Installation, *recipients: str, message: bytes = MESSAGE
) -> subprocess.CompletedProcess[bytes]:
    """``popgate deliver RECIPIENT...`` with ``message`` on standard input."""
    return subprocess.run(
        [sys.executable, "-m", "popgate.cli", "deliver", "-f", "bob@example.org", *recipients],
        input=message,
        env=installation.env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_popgate_deliver_answers_with_sysexits_codes(receiving: Installation) -> None:
    assert deliver(receiving, "alice@localhost").returncode == 0
    # The mbox "From " line a pipe transport may put first is not part of the message.
    assert deliver(receiving, "alice", message=b"From bob@example.org Thu Nov 26 12:00:00 2026\n"
                   + MESSAGE).returncode == 0  # fmt: skip
    unknown = deliver(receiving, "ghost@localhost")
    assert unknown.returncode == 67
    assert b"ghost@localhost: unknown recipient" in unknown.stderr
    # One unknown among several: the worst outcome is the exit status; alice still got it.
    assert deliver(receiving, "alice", "ghost").returncode == 67
    # Three messages of about 200 bytes: a fourth would go past 600 bytes.
    receiving.popgate("mailbox", "set", "alice", "--quota", "600B")
    over = deliver(receiving, "alice")
    assert over.returncode == 77
    assert b"alice: over quota:" in over.stderr
    receiving.popgate("mailbox", "set", "alice", "--quota", "unlimited")
    assert deliver(receiving, "alice", message=b"").returncode == 65
    assert retrieve_all(receiving) == [MESSAGE] * 3
    # With the data directory unreadable where it is looked for, the MTA is told to retry.
    elsewhere = dict(receiving.env, POPGATE_HOME=str(receiving.home / "missing"))
    retry = subprocess.run(
        [sys.executable, "-m", "popgate.cli", "deliver", "alice"],
        input=MESSAGE,
        env=elsewhere,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert retry.returncode == 75, retry.stderr


def test_a_delivery_killed_mid_write_leaves_no_partial_message(
    receiving: Installation, tmp_path: Path
) -> None:
    with smtplib.LMTP(str(receiving.layout.lmtp_socket)) as lmtp:
        lmtp.sendmail("bob@example.org", ["alice"], MESSAGE)
    maildir = maildir_of(receiving)
    tmp = maildir / "tmp"
    body = (b"0123456789abcdef" * 4 + b"\r\n") * (50 * 1024 * 1024 // 66)
    big = b"Subject: big\r\n\r\n" + body
    caught = False
    # The kill must land between the first byte written to tmp/ and the rename into new/:
    # watch tmp/ and kill as soon as a file appears. If the write wins the race, the
    # message is simply whole; try again (the guarantee is checked on every attempt).
    pid = delivery_pid(receiving)
    for _attempt in range(5):
        sender = subprocess.Popen(
            [sys.executable, "-c",
             "import smtplib, sys; data = sys.stdin.buffer.read();"
             f"smtplib.LMTP({str(receiving.layout.lmtp_socket)!r}).sendmail("
             "'bob@example.org', ['alice'], data)"],
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert sender.stdin is not None
        sender.stdin.write(big)
        sender.stdin.close()
        deadline = time.monotonic() + 60
        while not any(tmp.iterdir()) and time.monotonic() < deadline:
            if sender.poll() is not None:
                break
        if any(tmp.iterdir()):
            os.kill(pid, signal.SIGKILL)
            caught = True
        sender.wait(timeout=60)
        # Whatever happened, no POP3 client sees a partial message.
        messages = retrieve_all(receiving)
        assert all(message in (MESSAGE, big) for message in messages)
        if caught:
            # The host's recovery restarts the killed service.
            pid = delivery_pid(receiving, not_this=pid)
            if len(messages) == 1:
                break
        caught = False
    assert caught, "the kill never landed during a write"
    assert retrieve_all(receiving) == [MESSAGE]


# --- Postfix on loopback, delivering to MSExchangeDelivery over LMTP ---------------------

POSTFIX_SERVICES = """\
{smtp}     inet  n       -       n       -       -       smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""


def postfix_config(folder: Path, smtp_port: int, lmtp_socket: Path) -> Path:
    """A Postfix instance of its own (config, queue, log) accepting mail for ``localhost``
    on 127.0.0.1:``smtp_port`` and handing it to popgate over LMTP on its Unix socket."""
    config = folder / "etc"
    config.mkdir(parents=True)
    (config / "master.cf").write_text(POSTFIX_SERVICES.format(smtp=f"127.0.0.1:{smtp_port}"))
    (config / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {folder / 'queue'}\n"
        f"data_directory = {folder / 'data'}\n"
        f"maillog_file = {folder / 'postfix.log'}\nmaillog_file_prefixes = {folder}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        "myhostname = mx.example.org\nmydestination =\n"
        "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n"
        "alias_maps =\nalias_database =\nbiff = no\nsmtputf8_enable = no\n"
        "virtual_mailbox_domains = localhost\n"
        # popgate knows who exists: Postfix passes every recipient on and relays the verdict.
        "smtpd_reject_unlisted_recipient = no\n"
        f"virtual_transport = lmtp:unix:{lmtp_socket}\n"
        "smtpd_recipient_restrictions = permit_mynetworks, reject\n"
    )
    return config


@pytest.fixture
def postfix(receiving: Installation, tmp_path: Path) -> Iterator[int]:
    """A running Postfix instance; yields its SMTP port."""
    if os.geteuid() != 0:
        pytest.fail("the Postfix test starts its own Postfix, which needs root (as in CI)")
    port = free_port()
    folder = tmp_path / "postfix"
    config = postfix_config(folder, port, receiving.layout.lmtp_socket)
    # postfix start fills the queue folder; the data folder must be its mail owner's.
    (folder / "queue").mkdir()
    (folder / "data").mkdir()
    shutil.chown(folder / "data", "postfix")
    # The lmtp client runs as the postfix user: it must reach the socket through the folders.
    for parent in receiving.layout.lmtp_socket.parents:
        if parent == Path("/") or parent.stat().st_mode & 0o001:
            continue
        parent.chmod(parent.stat().st_mode | 0o001)
    command = ["postfix", "-c", str(config)]
    started = subprocess.run([*command, "start"], capture_output=True, text=True, timeout=60)
    log = folder / "postfix.log"
    assert started.returncode == 0, log.read_text() if log.exists() else started
    try:
        yield port
    finally:
        subprocess.run([*command, "stop"], capture_output=True, timeout=60, check=False)


def test_postfix_delivers_over_lmtp_and_fetchmail_reads_it_through_the_front_end(
    receiving: Installation, postfix: int, tmp_path: Path
) -> None:
    with smtplib.SMTP("127.0.0.1", postfix, timeout=30) as smtp:
        refused = smtp.sendmail("bob@example.org", ["alice@localhost"], MESSAGE)
    assert refused == {}
    deadline = time.monotonic() + 60
    while not any(maildir_of(receiving).glob("new/*")):
        assert time.monotonic() < deadline, (tmp_path / "postfix" / "postfix.log").read_text()
        time.sleep(0.2)

    out = tmp_path / "fetched"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {receiving.plain_port} protocol POP3 uidl\n"
        f'  user alice password "{PASSWORD}" is root here\n'
        "  sslproto tls1.2+ no sslcertck\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
    )
    rc.chmod(0o600)
    fetched = subprocess.run(
        ["fetchmail", "-f", str(rc), "-v", "--nodetach", "--idfile", str(tmp_path / "ids"),
         "--pidfile", str(tmp_path / "pid")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    message = out.read_bytes()
    # Postfix adds its trace headers; the message itself arrives whole.
    assert b"Received: from " in message
    assert b"Subject: by LMTP" in message
    assert b"\n..a line that starts with a dot" not in message
    assert b"\n.a line that starts with a dot" in message
    # fetchmail did not keep it: the maildrop is empty now.
    assert retrieve_all(receiving) == []


def test_the_quota_is_set_through_the_api_and_the_shell_and_audited(
    receiving: Installation,
) -> None:
    with client_of(receiving) as host:
        view = host.set_mailbox_quota("alice", "600B")
        assert view["prohibit_send_receive_quota"] == "600B"
        error = api_refusal(lambda: host.set_mailbox_quota("alice", "lots"))
        assert error.status == 422
        assert "ProhibitSendReceiveQuota must be a size such as" in str(error)
        assert host.search_audit(cmdlets=["Set-Mailbox"])[0]["detail"] == (
            "ProhibitSendReceiveQuota=600B"
        )
    shown = receiving.popgate(
        "shell", "-c",
        "Set-Mailbox alice -ProhibitSendReceiveQuota 2MB; "
        "Get-Mailbox alice | Format-List Name,ProhibitSendReceiveQuota",
    ).stdout  # fmt: skip
    assert "ProhibitSendReceiveQuota : 2MB" in shown
    with client_of(receiving) as host:
        assert host.mailbox("alice")["prohibit_send_receive_quota"] == "2MB"
