"""MSExchangePOP3BE driven over real sockets by poplib, curl and mpop."""

from __future__ import annotations

import base64
import contextlib
import poplib
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from popgate.protocol import ScramSha256Client, to_crlf
from tests.e2e.conftest import Installation, insecure_client_context, mbox_count, run_mpop

PASSWORD = "correct horse battery staple"

MESSAGES: list[bytes] = [
    b"From: a@example.com\nSubject: plain LF\n\nHello\nWorld\n",
    b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nafter lone dot\r\n",
    b"Subject: no final newline\r\n\r\nlast line without CRLF",
    "Subject: 8-bit\n\nGr\u00fc\u00dfe, \u00e9t\u00e9, \u65e5\u672c\n".encode(),
    b"Subject: nul\n\nbefore\x00after\n",
    b"Subject: body is a dot\n\n.\n",
]


def refusal(call: Callable[[], object]) -> str:
    """The -ERR line with which a poplib call failed (as text, so that -bb stays quiet)."""
    with pytest.raises(poplib.error_proto) as caught:
        call()
    reply = caught.value.args[0]
    assert isinstance(reply, bytes)
    return reply.decode("utf-8", "replace")


def command(client: poplib.POP3, line: str) -> bytes:
    """Send one command through poplib and return its one-line reply."""
    shortcmd: Callable[[str], bytes] = client._shortcmd  # type: ignore[attr-defined]
    return shortcmd(line)


def scram_login(client: poplib.POP3, user: str, password: str) -> bytes:
    """AUTH SCRAM-SHA-256 through poplib, checking the server's proof; the final reply."""
    scram = ScramSha256Client(user, password)
    first = base64.b64encode(scram.first_message()).decode()
    challenge = command(client, f"AUTH SCRAM-SHA-256 {first}")
    assert challenge.startswith(b"+ ")
    final = scram.final_message(base64.b64decode(challenge[2:]))
    server_final = command(client, base64.b64encode(final).decode())
    assert server_final.startswith(b"+ ")
    scram.verify_server_final(base64.b64decode(server_final[2:]))
    return command(client, "")


def pop3_ssl(installation: Installation) -> poplib.POP3_SSL:
    """A poplib session over TLS to the backend."""
    return poplib.POP3_SSL(
        "127.0.0.1", installation.backend_port, context=insecure_client_context(), timeout=30
    )


def logged_in(installation: Installation, user: str = "alice") -> poplib.POP3_SSL:
    """A session logged in with USER/PASS."""
    client = pop3_ssl(installation)
    client.user(user)
    client.pass_(PASSWORD)
    return client


@pytest.fixture
def alice(installation: Installation, tmp_path: Path) -> Installation:
    """Mailbox alice with the MESSAGES corpus, and the backend running."""
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")
    installation.start_backend()
    return installation


def test_greeting_is_exchange_banner(alice: Installation) -> None:
    client = pop3_ssl(alice)
    assert client.getwelcome() == b"+OK The Microsoft Exchange POP3 service is ready."
    assert client.quit() == b"+OK Microsoft Exchange Server POP3 server signing off."


def test_user_pass_stat_list_uidl(alice: Installation) -> None:
    client = logged_in(alice)
    count, size = client.stat()
    assert count == len(MESSAGES)
    assert size == sum(len(to_crlf(message)) for message in MESSAGES)
    _, listing, _ = client.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert sizes == [len(to_crlf(message)) for message in MESSAGES]
    assert command(client, "LIST 2") == f"+OK 2 {sizes[1]}".encode()
    _, uid_lines, _ = client.uidl()
    uids = [line.split()[1] for line in uid_lines]
    assert len(set(uids)) == len(MESSAGES)
    for uid in uids:
        assert 1 <= len(uid) <= 70
        assert all(0x21 <= byte <= 0x7E for byte in uid)
    client.quit()
    # UIDLs are stable across sessions.
    client = logged_in(alice)
    assert [line.split()[1] for line in client.uidl()[1]] == uids
    client.quit()


def test_retr_returns_stored_message_in_crlf_form_with_list_size(alice: Installation) -> None:
    client = logged_in(alice)
    _, listing, _ = client.list()
    for number, message in enumerate(MESSAGES, 1):
        _, lines, octets = client.retr(number)
        expected = to_crlf(message)
        assert b"".join(line + b"\r\n" for line in lines) == expected
        assert octets == len(expected) == int(listing[number - 1].split()[1])
    client.quit()


def test_top_returns_headers_and_n_body_lines(alice: Installation) -> None:
    client = logged_in(alice)
    _, lines, _ = client.top(1, 1)
    assert lines == [b"From: a@example.com", b"Subject: plain LF", b"", b"Hello"]
    _, lines, _ = client.top(1, 0)
    assert lines == [b"From: a@example.com", b"Subject: plain LF", b""]
    _, lines, _ = client.top(2, 99)
    assert b"".join(line + b"\r\n" for line in lines) == to_crlf(MESSAGES[1])
    assert refusal(lambda: client.top(99, 1)).startswith("-ERR")
    client.quit()


def test_large_message_20_mb(installation: Installation, tmp_path: Path) -> None:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz.ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    body = b"Subject: big\n\n" + b".dot-start\n" + line * (20 * 1024 * 1024 // len(line))
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", [body], tmp_path / "eml")
    installation.start_backend()
    client = logged_in(installation)
    size = int(command(client, "LIST 1").split()[2])
    _, lines, octets = client.retr(1)
    assert octets == size == len(to_crlf(body))
    assert b"\r\n".join(lines) + b"\r\n" == to_crlf(body)
    client.quit()


def test_dele_rset_quit(alice: Installation) -> None:
    client = logged_in(alice)
    client.dele(1)
    with pytest.raises(poplib.error_proto):
        client.dele(1)
    with pytest.raises(poplib.error_proto):
        client.retr(1)
    assert client.stat()[0] == len(MESSAGES) - 1
    client.rset()
    assert client.stat()[0] == len(MESSAGES)
    uid_of_2 = command(client, "UIDL 2").split()[2]
    client.dele(1)
    client.quit()
    client = logged_in(alice)
    assert client.stat()[0] == len(MESSAGES) - 1
    assert command(client, "UIDL 1").split()[2] == uid_of_2
    client.quit()


def test_drop_without_quit_deletes_nothing(alice: Installation) -> None:
    client = logged_in(alice)
    client.dele(1)
    client.dele(2)
    client.file.close()
    client.sock.close()
    # The lock is released as soon as the server sees the close; retry briefly.
    deadline = time.monotonic() + 10
    while True:
        try:
            client = logged_in(alice)
            break
        except poplib.error_proto:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert client.stat()[0] == len(MESSAGES)
    client.quit()


def test_second_session_gets_in_use_and_first_is_unaffected(alice: Installation) -> None:
    first = logged_in(alice)
    second = pop3_ssl(alice)
    second.user("alice")
    assert "[IN-USE]" in refusal(lambda: second.pass_(PASSWORD))
    assert first.stat()[0] == len(MESSAGES)
    first.quit()
    second.user("alice")
    assert second.pass_(PASSWORD).startswith(b"+OK")
    second.quit()


def test_wrong_password_gets_auth_code(alice: Installation) -> None:
    client = pop3_ssl(alice)
    client.user("alice")
    reply = refusal(lambda: client.pass_("wrong"))
    assert reply == "-ERR [AUTH] Logon failure: unknown user name or bad password."
    client.user("nobody")
    assert "[AUTH] Logon failure" in refusal(lambda: client.pass_("wrong"))
    client.quit()


def test_auth_plain_with_poplib(alice: Installation) -> None:
    client = pop3_ssl(alice)
    # alice may not act as somebody else (authzid differs from authcid).
    as_bob = base64.b64encode(b"bob\0alice\0" + PASSWORD.encode()).decode()
    assert "[AUTH]" in refusal(lambda: command(client, f"AUTH PLAIN {as_bob}"))
    token = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    assert command(client, f"AUTH PLAIN {token}").startswith(b"+OK")
    assert client.stat()[0] == len(MESSAGES)
    client.quit()


def test_auth_scram_sha_256_with_poplib(alice: Installation) -> None:
    client = pop3_ssl(alice)
    assert scram_login(client, "alice", PASSWORD).startswith(b"+OK")
    assert client.stat()[0] == len(MESSAGES)
    client.quit()


def test_curl_auth_plain_list_and_retr(alice: Installation) -> None:
    url = f"pop3s://127.0.0.1:{alice.backend_port}/"
    common = ["curl", "-sS", "-k", "--sasl-ir", "--login-options", "AUTH=PLAIN"]
    listing = subprocess.run(
        [*common, "-u", f"alice:{PASSWORD}", url], capture_output=True, timeout=60, check=True
    ).stdout
    assert listing.splitlines()[0] == f"1 {len(to_crlf(MESSAGES[0]))}".encode()
    message = subprocess.run(
        [*common, "-u", f"alice:{PASSWORD}", url + "2"], capture_output=True, timeout=60, check=True
    ).stdout
    assert message == to_crlf(MESSAGES[1])


def test_mpop_scram_sha_256_pipelined_retr(alice: Installation, tmp_path: Path) -> None:
    result, delivered = run_mpop(
        alice.backend_port, starttls=False, user="alice", password=PASSWORD, folder=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "AUTH SCRAM-SHA-256" in result.stdout
    # mpop pipelines: several RETR commands go out before the first reply is read.
    assert "RETR 1" in result.stdout
    assert mbox_count(delivered) == len(MESSAGES)
    assert "Gr\u00fc\u00dfe".encode() in delivered


class RawSession:
    """A TLS connection to the backend that sends and reads raw lines (greeting consumed)."""

    def __init__(self, port: int) -> None:
        self._stack = contextlib.ExitStack()
        raw = self._stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        self.tls = self._stack.enter_context(insecure_client_context().wrap_socket(raw))
        self.reader = self._stack.enter_context(self.tls.makefile("rb"))
        self.greeting = self.reader.readline()

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def ask(self, line: bytes) -> bytes:
        """Send ``line`` and return the next reply line."""
        self.tls.sendall(line)
        return self.reader.readline()


def test_pipelined_commands_are_answered_in_order(alice: Installation) -> None:
    with RawSession(alice.backend_port) as session:
        assert session.greeting.startswith(b"+OK")
        commands = ["USER alice", f"PASS {PASSWORD}", "STAT", "LIST 1", "UIDL 9", "NOOP", "QUIT"]
        session.tls.sendall("".join(command + "\r\n" for command in commands).encode())
        replies = [session.reader.readline() for _ in range(7)]
        assert replies[0].startswith(b"+OK")
        assert replies[1] == b"+OK User successfully logged on.\r\n"
        assert replies[2].startswith(f"+OK {len(MESSAGES)} ".encode())
        assert replies[3] == f"+OK 1 {len(to_crlf(MESSAGES[0]))}\r\n".encode()
        assert replies[4].startswith(b"-ERR")
        assert replies[5].startswith(b"+OK")
        assert replies[6].startswith(b"+OK Microsoft Exchange Server POP3 server signing off.")


def test_bad_input_gets_err_and_session_survives(alice: Installation) -> None:
    with RawSession(alice.backend_port) as session:
        probes = [
            b"STAT\r\n",  # wrong state
            b"RETR 1\r\n",
            b"PASS x\r\n",  # PASS without USER
            b"XYZZY\r\n",
            b"\r\n",
            b"NO\x00OP\r\n",
            b"A" * 100_000 + b"\r\n",
            b"AUTH PLAIN not*base64\r\n",
            b"AUTH PLAIN =AAA\r\n",
            b"STLS\r\n",  # implicit TLS already: refused
        ]
        for probe in probes:
            reply = session.ask(probe)
            assert reply.startswith(b"-ERR"), (probe[:20], reply)
            assert b"Traceback" not in reply
        assert session.ask(b"USER alice\r\n").startswith(b"+OK")
        assert session.ask(f"PASS {PASSWORD}\r\n".encode()).startswith(b"+OK")
        in_transaction = [
            "RETR abc", "RETR 0", "RETR -1", "RETR 99999999999999999999", "TOP 1 -1", "LIST 1 2",
            "RETR 999", "USER bob", "AUTH PLAIN",
        ]  # fmt: skip
        for probe in (command.encode() + b"\r\n" for command in in_transaction):
            reply = session.ask(probe)
            assert reply.startswith(b"-ERR"), (probe, reply)
        assert session.ask(b"STAT\r\n").startswith(f"+OK {len(MESSAGES)} ".encode())
        assert session.ask(b"QUIT\r\n").startswith(b"+OK")


def test_a_thousand_unknown_commands_end_in_a_clean_close(alice: Installation) -> None:
    with RawSession(alice.backend_port) as session:
        session.tls.sendall(b"XYZZY\r\n" * 1000)
        replies = []
        while line := session.reader.readline():
            replies.append(line)
        assert replies, "the server closed without a word"
        assert all(reply.startswith(b"-ERR") for reply in replies)
        assert len(replies) < 1000
    # The service is still healthy.
    client = logged_in(alice)
    assert client.stat()[0] == len(MESSAGES)
    client.quit()


def test_direct_logins_are_off_by_default(installation: Installation, tmp_path: Path) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.set("AllowDirectBackendLogin", "$false")
    installation.start_backend()
    client = pop3_ssl(installation)
    capabilities = client.capa()
    assert "USER" not in capabilities
    assert "STLS" not in capabilities
    assert capabilities["SASL"] == ["PLAIN"]
    assert "Direct logins" in refusal(lambda: client.user("alice"))
    token = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    assert "Direct logins" in refusal(lambda: command(client, f"AUTH PLAIN {token}"))
    client.quit()


def test_trusted_front_end_login_over_tls_and_unix_socket(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES[:2], tmp_path / "eml")
    installation.set("AllowDirectBackendLogin", "$false")
    installation.start_backend()
    layout = installation.layout
    secret = layout.proxy_secret_file.read_text().strip()
    server = layout.server_name
    token = base64.b64encode(f"alice\0frontend/{server}\0{secret}".encode()).decode()
    wrong = base64.b64encode(f"alice\0frontend/{server}\0not-the-secret".encode()).decode()

    client = pop3_ssl(installation)
    assert command(client, "XCLIENT ADDR=192.0.2.7 PORT=40000 SESSION=test").startswith(b"+OK")
    assert "[AUTH]" in refusal(lambda: command(client, f"AUTH PLAIN {wrong}"))
    assert command(client, f"AUTH PLAIN {token}").startswith(b"+OK")
    assert client.stat()[0] == 2
    client.quit()
    assert "192.0.2.7" in installation.backend_log()

    with socket.socket(socket.AF_UNIX) as unix:
        unix.connect(str(layout.backend_socket))
        reader = unix.makefile("rb")
        with contextlib.closing(reader):
            assert reader.readline().startswith(b"+OK")
            unix.sendall(f"AUTH PLAIN {token}\r\nSTAT\r\nQUIT\r\n".encode())
            assert reader.readline().startswith(b"+OK")
            assert reader.readline().startswith(b"+OK 2 ")
            assert reader.readline().startswith(b"+OK")


def test_pop_disabled_and_administrator_are_refused(installation: Installation) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.start_backend()
    admin_password = installation.layout.administrator_password_file.read_text().strip()
    client = pop3_ssl(installation)
    client.user("Administrator")
    assert "[AUTH]" in refusal(lambda: client.pass_(admin_password))
    client.quit()
    installation.popgate("mailbox", "set", "alice", "--pop-enabled", "$false")
    client = pop3_ssl(installation)
    client.user("alice")
    assert "[SYS/PERM] POP3 access is disabled" in refusal(lambda: client.pass_(PASSWORD))
    client.quit()


def test_descending_sort_order(installation: Installation, tmp_path: Path) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES[:3], tmp_path / "eml")
    installation.set("MessageRetrievalSortOrder", "Descending")
    installation.start_backend()
    client = logged_in(installation)
    _, lines, _ = client.retr(1)
    assert b"".join(line + b"\r\n" for line in lines) == to_crlf(MESSAGES[2])
    client.quit()


def test_max_command_size_is_honoured_once_logged_in(installation: Installation) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.set("MaxCommandSize", "40")
    installation.start_backend()
    client = pop3_ssl(installation)
    # Before login the peer is normally a front end with longer internal lines.
    long_name = "a" * 60
    assert "Logon failure" in refusal(lambda: (client.user(long_name), client.pass_("x")))
    login = logged_in(installation)
    assert "too long" in refusal(lambda: command(login, "UIDL " + "1" * 60))
    assert login.stat()[0] == 0
    login.quit()
    client.quit()


def test_kill_9_leaves_no_stale_lock(alice: Installation) -> None:
    client = logged_in(alice)
    client.dele(1)
    backend = alice.processes[-1]
    backend.send_signal(signal.SIGKILL)
    backend.wait()
    client.close()
    alice.start_backend()
    client = logged_in(alice)
    assert client.stat()[0] == len(MESSAGES)
    client.quit()


def test_sigterm_stops_gracefully_without_applying_unquit_deletions(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.add_mailbox("bob", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "a")
    installation.import_messages("bob", MESSAGES, tmp_path / "b")
    installation.set("GracefulStopTimeout", "2")
    backend = installation.start_backend()
    lingering = logged_in(installation, "alice")
    lingering.dele(1)
    quitting = logged_in(installation, "bob")
    quitting.dele(1)
    started = time.monotonic()
    backend.send_signal(signal.SIGTERM)
    # A session in TRANSACTION may finish during the grace period: its QUIT applies DELE.
    quitting.quit()
    assert backend.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
    # The other one was closed at the end of the grace period, without UPDATE.
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        lingering.stat()
    lingering.close()
    installation.start_backend()
    alice = logged_in(installation, "alice")
    assert alice.stat()[0] == len(MESSAGES)
    alice.quit()
    bob = logged_in(installation, "bob")
    assert bob.stat()[0] == len(MESSAGES) - 1
    bob.quit()


def test_port_in_use_is_reported(installation: Installation) -> None:
    with socket.socket(socket.AF_INET6) as blocker:
        blocker.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        blocker.bind(("::", installation.backend_port))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "popgate.cli", "service", "run", "MSExchangePOP3BE"],
            env=installation.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert "ProxyTargetPort" in result.stderr
    assert "Traceback" not in result.stderr


def test_timeouts_close_without_update_and_commands_do_not_reset_pre_auth(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")
    installation.set("PreAuthenticatedConnectionTimeout", "00:00:30")
    installation.set("AuthenticatedConnectionTimeout", "00:00:30")
    installation.start_backend()
    idle = logged_in(installation)
    idle.dele(1)
    chatty = pop3_ssl(installation)
    started = time.monotonic()
    # Commands before login do not reset the pre-authentication timer (Exchange's rule).
    with pytest.raises((poplib.error_proto, OSError, EOFError)):  # noqa: PT012 - a loop of CAPAs
        while time.monotonic() - started < 60:
            chatty.capa()
            time.sleep(2)
    assert 29 <= time.monotonic() - started < 45
    # The idle authenticated session was closed by its timer, without UPDATE.
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        idle.stat()
    idle.close()
    chatty.close()
    client = logged_in(installation)
    assert client.stat()[0] == len(MESSAGES)
    client.quit()


def test_tls_1_1_is_refused_and_tls_1_2_accepted(alice: Installation) -> None:
    old = insecure_client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: the point
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    # Let the client really offer TLS 1.1, so that the refusal is the server's.
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", alice.backend_port)) as raw,
        pytest.raises(ssl.SSLError, match=r"(?i)protocol.version|UNEXPECTED_EOF"),
    ):
        old.wrap_socket(raw)
    modern = insecure_client_context()
    modern.maximum_version = ssl.TLSVersion.TLSv1_2
    client = poplib.POP3_SSL("127.0.0.1", alice.backend_port, context=modern, timeout=30)
    assert isinstance(client.sock, ssl.SSLSocket)
    assert client.sock.version() == "TLSv1.2"
    client.quit()


def test_quit_ends_with_tls_close_notify(alice: Installation) -> None:
    with socket.create_connection(("127.0.0.1", alice.backend_port)) as raw:
        tls = insecure_client_context().wrap_socket(raw, suppress_ragged_eofs=False)
        with tls:
            tls.sendall(b"QUIT\r\n")
            received = b""
            # Without close_notify this raises SSLEOFError instead of returning b"".
            while chunk := tls.recv(4096):
                received += chunk
            assert received.endswith(b"signing off.\r\n")
