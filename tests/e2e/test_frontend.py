"""MSExchangePOP3, the front end, driven by real clients through to a real backend."""

from __future__ import annotations

import base64
import poplib
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from popgate.home import Home
from popgate.protocol import to_crlf
from tests.e2e.conftest import (
    Installation,
    free_port,
    insecure_client_context,
    mbox_count,
    run_mpop,
)
from tests.e2e.test_backend import MESSAGES, PASSWORD, command, refusal, scram_login


@pytest.fixture
def both(installation: Installation, tmp_path: Path) -> Installation:
    """Mailbox alice with the MESSAGES corpus, and both POP3 services running."""
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")
    installation.start_backend()
    installation.start_frontend()
    return installation


def stls_session(installation: Installation) -> poplib.POP3:
    """poplib on the plain-text port, upgraded with STLS."""
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(context=insecure_client_context())
    return client


def ssl_session(installation: Installation) -> poplib.POP3_SSL:
    """poplib on the implicit-TLS port."""
    return poplib.POP3_SSL(
        "127.0.0.1", installation.ssl_port, context=insecure_client_context(), timeout=30
    )


def wait_until_greeted(port: int) -> None:
    """Wait until a new connection is greeted with +OK and the front end has seen it close.

    The start-up probe's connection counts against the connection limits for a moment.
    """
    deadline = time.monotonic() + 10
    while True:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            raw.makefile("rb") as reader,
        ):
            if reader.readline().startswith(b"+OK") or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    time.sleep(0.5)


def login(client: poplib.POP3, user: str = "alice") -> poplib.POP3:
    """USER/PASS and return the client."""
    client.user(user)
    client.pass_(PASSWORD)
    return client


def mailbox_view(client: poplib.POP3) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """LIST, UIDL and every message (CRLF form) of a logged-in session."""
    listing = client.list()[1]
    uids = client.uidl()[1]
    bodies = [
        b"".join(line + b"\r\n" for line in client.retr(n)[1]) for n in range(1, len(listing) + 1)
    ]
    return listing, uids, bodies


def test_poplib_stls_on_110_and_ssl_on_995_see_the_same_mailbox(both: Installation) -> None:
    plain = login(stls_session(both))
    assert plain.getwelcome() == b"+OK The Microsoft Exchange POP3 service is ready."
    seen_plain = mailbox_view(plain)
    assert plain.quit() == b"+OK Microsoft Exchange Server POP3 server signing off."
    implicit = login(ssl_session(both))
    seen_implicit = mailbox_view(implicit)
    implicit.quit()
    assert seen_plain == seen_implicit
    listing, uids, bodies = seen_plain
    assert bodies == [to_crlf(message) for message in MESSAGES]
    assert [int(line.split()[1]) for line in listing] == [len(body) for body in bodies]
    assert len({line.split()[1] for line in uids}) == len(MESSAGES)


def test_curl_stls_and_implicit_tls_with_sasl_ir(both: Installation) -> None:
    listing = subprocess.run(
        ["curl", "-sS", "-k", "--ssl-reqd", "-u", f"alice:{PASSWORD}",
         f"pop3://127.0.0.1:{both.plain_port}/"],
        capture_output=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert listing.splitlines()[0] == f"1 {len(to_crlf(MESSAGES[0]))}".encode()
    message = subprocess.run(
        ["curl", "-sS", "-k", "--sasl-ir", "--login-options", "AUTH=PLAIN", "-u",
         f"alice:{PASSWORD}", f"pop3s://127.0.0.1:{both.ssl_port}/2"],
        capture_output=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert message == to_crlf(MESSAGES[1])


def test_fetchmail_stls_uidl_keep_then_nothing_new(both: Installation, tmp_path: Path) -> None:
    out = tmp_path / "fetched"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {both.plain_port} protocol POP3 uidl\n"
        f'  user alice password "{PASSWORD}" is root here\n'
        "  sslproto tls1.2+ no sslcertck keep\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
    )
    rc.chmod(0o600)
    run = [
        "fetchmail", "-f", str(rc), "-v", "--nodetach", "--idfile", str(tmp_path / "ids"),
        "--pidfile", str(tmp_path / "pid"),
    ]  # fmt: skip
    first = subprocess.run(run, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    transcript = first.stdout + first.stderr
    assert "POP3> STLS" in transcript
    assert "POP3> UIDL" in transcript
    fetched = out.read_bytes()
    assert fetched.count(b"Subject: ") >= len(MESSAGES)
    assert "Gr\u00fc\u00dfe".encode() in fetched
    second = subprocess.run(run, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 1, second.stdout + second.stderr  # 1: no new mail
    assert out.read_bytes() == fetched


def test_mpop_scram_sha_256_over_stls_with_pipelined_retr(
    both: Installation, tmp_path: Path
) -> None:
    result, delivered = run_mpop(
        both.plain_port, starttls=True, user="alice", password=PASSWORD, folder=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STLS" in result.stdout
    assert "AUTH SCRAM-SHA-256" in result.stdout
    assert mbox_count(delivered) == len(MESSAGES)


def test_openssl_s_client_starttls_pop3(both: Installation) -> None:
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{both.plain_port}", "-starttls", "pop3",
         "-crlf", "-quiet"],
        input=f"USER alice\nPASS {PASSWORD}\nSTAT\nQUIT\n", capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith(("+OK", "-ERR"))]
    total = sum(len(to_crlf(message)) for message in MESSAGES)
    assert f"+OK {len(MESSAGES)} {total}" in lines, result.stdout + result.stderr
    assert lines[-1] == "+OK Microsoft Exchange Server POP3 server signing off."


def test_secure_login_is_the_default(both: Installation) -> None:
    client = poplib.POP3("127.0.0.1", both.plain_port, timeout=30)
    before = client.capa()
    assert "STLS" in before
    assert "USER" not in before
    assert "SASL" not in before
    assert refusal(lambda: client.user("alice")).startswith("-ERR")
    token = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    assert refusal(lambda: command(client, f"AUTH PLAIN {token}")).startswith("-ERR")
    client.stls(context=insecure_client_context())
    after = client.capa()
    assert "STLS" not in after
    assert "USER" in after
    assert after["SASL"] == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
    login(client).quit()
    implicit = ssl_session(both)
    assert "STLS" not in implicit.capa()
    implicit.quit()


def test_plain_text_authentication_allows_scram_but_not_passwords_before_tls(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.set("LoginType", "PlainTextAuthentication")
    installation.start_backend()
    installation.start_frontend()
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    capabilities = client.capa()
    assert "USER" not in capabilities
    assert capabilities["SASL"] == ["SCRAM-SHA-256"]
    assert refusal(lambda: client.user("alice")).startswith("-ERR")
    assert scram_login(client, "alice", PASSWORD).startswith(b"+OK")
    assert client.stat() == (0, 0)
    client.quit()


def test_plain_text_login_allows_user_pass_without_tls(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES[:1], tmp_path / "eml")
    installation.set("LoginType", "PlainTextLogin")
    installation.start_backend()
    installation.start_frontend()
    client = login(poplib.POP3("127.0.0.1", installation.plain_port, timeout=30))
    assert client.stat()[0] == 1
    client.quit()


def test_stls_injection_is_never_executed_inside_tls(both: Installation) -> None:
    with socket.create_connection(("127.0.0.1", both.plain_port), timeout=10) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        raw.sendall(b"STLS\r\nNOOP\r\n")
        assert reader.readline().startswith(b"+OK")
        reader.close()
        with insecure_client_context().wrap_socket(raw) as tls:
            tls.settimeout(3)
            try:
                leaked = tls.recv(1024)
            except TimeoutError:
                leaked = b""
            assert leaked == b"", leaked  # the NOOP sent before the handshake got no reply
            # The session itself is alive: a command sent inside TLS is answered.
            tls.settimeout(10)
            tls.sendall(b"NOOP\r\n")
            assert tls.recv(1024).startswith(b"-ERR")  # NOOP before login: wrong state
            tls.sendall(b"CAPA\r\n")
            assert tls.recv(1024).startswith(b"+OK")


def test_backend_down_gives_sys_temp_and_the_front_end_keeps_serving(
    installation: Installation,
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.start_frontend()
    client = ssl_session(installation)
    client.user("alice")
    reply = refusal(lambda: client.pass_(PASSWORD))
    assert reply.startswith("-ERR [SYS/TEMP]")
    assert "[AUTH]" not in reply
    assert "USER" in client.capa()
    client.quit()
    # Once the backend is there, the same front end logs the user on.
    installation.start_backend()
    login(ssl_session(installation)).quit()


def test_in_use_is_relayed_across_two_front_end_sessions(both: Installation) -> None:
    first = login(ssl_session(both))
    second = ssl_session(both)
    second.user("alice")
    assert refusal(lambda: second.pass_(PASSWORD)).startswith("-ERR [IN-USE]")
    first.quit()
    login(second).quit()


def test_wrong_password_and_unknown_user_look_the_same(both: Installation) -> None:
    client = ssl_session(both)
    client.user("alice")
    wrong_password = refusal(lambda: client.pass_("nope"))
    client.user("nobody")
    unknown_user = refusal(lambda: client.pass_("nope"))
    assert wrong_password == unknown_user
    assert wrong_password == "-ERR [AUTH] Logon failure: unknown user name or bad password."
    client.quit()
    log = both.frontend_log()
    assert "authentication failure: rhost=127.0.0.1 user='nobody'" in log
    # The shipped fail2ban filter finds the client's address in those lines.
    filter_file = Path(__file__).parents[2] / "contrib" / "fail2ban" / "filter.d" / "popgate.conf"
    failregex = next(
        line.split("=", 1)[1].strip()
        for line in filter_file.read_text().splitlines()
        if line.startswith("failregex")
    )
    pattern = re.compile(failregex.replace("<HOST>", r"(?P<host>\S+)"))
    hosts = [match["host"] for line in log.splitlines() if (match := pattern.search(line))]
    assert hosts == ["127.0.0.1", "127.0.0.1"]


def test_administrator_and_pop_disabled_are_refused(both: Installation) -> None:
    admin = both.layout.administrator_password_file.read_text().strip()
    client = ssl_session(both)
    client.user("Administrator")
    assert refusal(lambda: client.pass_(admin)).startswith("-ERR [AUTH]")
    client.quit()
    both.popgate("mailbox", "set", "alice", "--pop-enabled", "$false")
    client = ssl_session(both)
    client.user("alice")
    assert refusal(lambda: client.pass_(PASSWORD)).startswith("-ERR [SYS/PERM]")
    client.quit()


def test_connection_limits(installation: Installation) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.set("MaxConnectionFromSingleIP", "2", "MaxConnectionsPerUser", "1")
    installation.start_backend()
    installation.start_frontend()
    wait_until_greeted(installation.plain_port)
    first = ssl_session(installation)
    second = ssl_session(installation)
    with (
        socket.create_connection(("127.0.0.1", installation.ssl_port), timeout=10) as raw,
        insecure_client_context().wrap_socket(raw) as third,
        third.makefile("rb") as reader,
    ):
        assert reader.readline().startswith(b"-ERR [SYS/TEMP] Too many connections")
    login(first)
    second.user("alice")
    assert "Too many sessions for this user" in refusal(lambda: second.pass_(PASSWORD))
    # Over a limit the connection is closed after the reply.
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        second.noop()
    second.close()
    first.quit()
    assert "MaxConnectionFromSingleIP" in installation.frontend_log()


def test_client_gone_mid_retr_leaves_both_services_healthy(
    installation: Installation, tmp_path: Path
) -> None:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n"
    big = b"Subject: big\n\n" + line * (8 * 1024 * 1024 // len(line))
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", [big, MESSAGES[0]], tmp_path / "eml")
    backend = installation.start_backend()
    frontend = installation.start_frontend()
    client = login(ssl_session(installation))
    client.dele(2)
    client.sock.sendall(b"RETR 1\r\n")
    assert client.file.readline().startswith(b"+OK")
    client.file.read(100_000)
    client.file.close()
    client.sock.close()
    deadline = time.monotonic() + 15
    while True:
        try:
            again = login(ssl_session(installation))
            break
        except poplib.error_proto:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert again.stat()[0] == 2  # the DELE was not applied
    again.quit()
    assert backend.poll() is None
    assert frontend.poll() is None


def test_failed_stls_handshake_closes_the_connection(both: Installation) -> None:
    with socket.create_connection(("127.0.0.1", both.plain_port), timeout=20) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        raw.sendall(b"STLS\r\n")
        assert reader.readline().startswith(b"+OK")
        raw.sendall(b"USER alice\r\nthis is not a TLS ClientHello\r\n")
        # No plaintext fallback: the server drops the connection.
        assert reader.read() == b""
        reader.close()


def test_failed_logins_are_delayed_more_and_more_then_locked_out(
    installation: Installation,
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.set(
        "LoginFailureDelay", "1", "LoginFailureMaxDelay", "3", "LoginFailureLockout", "3"
    )
    installation.start_backend()
    installation.start_frontend()
    client = ssl_session(installation)
    delays = []
    for _ in range(3):
        client.user("alice")
        started = time.monotonic()
        assert refusal(lambda: client.pass_("wrong")).startswith("-ERR [AUTH]")
        delays.append(time.monotonic() - started)
    assert 1 <= delays[0] < 2.5
    assert 2 <= delays[1] < 3.5
    assert 3 <= delays[2] < 4.5  # capped at LoginFailureMaxDelay
    # Locked out now: even the right password is not checked.
    client.user("alice")
    assert refusal(lambda: client.pass_(PASSWORD)).startswith("-ERR [LOGIN-DELAY]")
    client.quit()
    assert "authentication refused: rhost=127.0.0.1 user='alice'" in installation.frontend_log()
    time.sleep(3.2)
    login(ssl_session(installation)).quit()


def test_x509_certificate_name_serves_an_imported_certificate(
    installation: Installation, tmp_path: Path
) -> None:
    authority = trustme.CA()
    issued = authority.issue_cert("mail.example.test", "127.0.0.1")
    certificate, key = tmp_path / "mail.crt", tmp_path / "mail.key"
    issued.private_key_pem.write_to_path(str(key))
    issued.cert_chain_pems[0].write_to_path(str(certificate))
    installation.popgate(
        "certificate", "import", "mail.example.test", "--cert", str(certificate), "--key", str(key)
    )
    installation.add_mailbox("alice", PASSWORD)
    installation.set("X509CertificateName", "mail.example.test")
    installation.start_backend()
    installation.start_frontend()
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    # Implicit TLS: the certificate verifies for its name against the test CA.
    with (
        socket.create_connection(("127.0.0.1", installation.ssl_port), timeout=10) as raw,
        trusting.wrap_socket(raw, server_hostname="mail.example.test") as tls,
        tls.makefile("rb") as reader,
    ):
        assert reader.readline().startswith(b"+OK")
    # STLS on the plain-text port presents the same certificate.
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    client.stls(context=trusting)  # verifies the certificate for 127.0.0.1, also in it
    login(client).quit()


def test_a_missing_named_certificate_stops_the_start_with_a_reason(
    installation: Installation,
) -> None:
    installation.set("X509CertificateName", "absent.example.test")
    result = installation.popgate("service", "run", "MSExchangePOP3", check=False)
    assert result.returncode == 1
    assert "popgate certificate import absent.example.test" in result.stderr
    assert "Traceback" not in result.stderr


def test_max_connections_and_the_pre_authentication_timer(installation: Installation) -> None:
    installation.set("MaxConnections", "1", "PreAuthenticatedConnectionTimeout", "00:00:30")
    installation.start_backend()
    installation.start_frontend()
    wait_until_greeted(installation.plain_port)
    chatty = poplib.POP3("127.0.0.1", installation.plain_port, timeout=10)
    with (
        socket.create_connection(("127.0.0.1", installation.plain_port), timeout=10) as raw,
        raw.makefile("rb") as reader,
    ):
        assert reader.readline().startswith(
            b"-ERR [SYS/TEMP] Too many connections (MaxConnections)"
        )
    started = time.monotonic()
    # CAPA before login does not reset the pre-authentication timer.
    with pytest.raises((poplib.error_proto, OSError, EOFError)):  # noqa: PT012 - a loop of CAPAs
        while time.monotonic() - started < 60:
            chatty.capa()
            time.sleep(2)
    assert 28 <= time.monotonic() - started < 45
    chatty.close()
    # The closed connection no longer counts against MaxConnections.
    again = poplib.POP3("127.0.0.1", installation.plain_port, timeout=10)
    assert again.getwelcome().startswith(b"+OK")
    again.quit()


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _holds_socket(pid: int, inodes: set[str]) -> bool:
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = descriptor.readlink().name
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def test_worker_processes_share_the_ports_and_stop_together(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES[:1], tmp_path / "eml")
    installation.set("WorkerProcesses", "3")
    installation.start_backend()
    frontend = installation.start_frontend()
    deadline = time.monotonic() + 30
    while True:
        workers = _children(frontend.pid)
        inodes = _listening_inodes(installation.plain_port)
        serving = [pid for pid in [frontend.pid, *workers] if _holds_socket(pid, inodes)]
        if len(serving) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(workers) == 2
    assert len(serving) == 3, "every process listens on the shared port (SO_REUSEPORT)"
    for _ in range(12):
        client = login(ssl_session(installation))
        assert client.stat()[0] == 1
        client.quit()
    frontend.terminate()
    assert frontend.wait(timeout=60) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_max_command_size_and_idle_timeout_after_login(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")
    installation.set("MaxCommandSize", "40", "AuthenticatedConnectionTimeout", "00:00:30")
    installation.start_backend()
    installation.start_frontend()
    client = ssl_session(installation)
    assert "too long" in refusal(lambda: command(client, "USER " + "a" * 60))
    login(client)
    client.dele(1)
    started = time.monotonic()
    with pytest.raises((poplib.error_proto, OSError, EOFError)):  # noqa: PT012 - wait it out
        time.sleep(33)
        client.stat()
    assert time.monotonic() - started < 45
    client.close()
    again = login(ssl_session(installation))
    assert again.stat()[0] == len(MESSAGES)  # closed by the timer: no UPDATE
    again.quit()


def test_quit_through_the_front_end_ends_with_tls_close_notify(both: Installation) -> None:
    with (
        socket.create_connection(("127.0.0.1", both.ssl_port)) as raw,
        insecure_client_context().wrap_socket(raw, suppress_ragged_eofs=False) as tls,
    ):
        tls.sendall(f"USER alice\r\nPASS {PASSWORD}\r\nQUIT\r\n".encode())
        received = b""
        # Without close_notify this raises SSLEOFError instead of returning b"".
        while chunk := tls.recv(4096):
            received += chunk
        assert received.endswith(b"signing off.\r\n")


def test_a_mailbox_on_another_mailbox_server_is_reached_over_tls(
    installation: Installation, tmp_path: Path
) -> None:
    # A second Mailbox server, "mbx2", with its own data directory and store, sharing this
    # computer's directory, as two computers share one (here both on loopback).
    other_root = tmp_path / "mbx2"
    shared_directory = installation.layout.read_config()["directory_url"]
    Home(other_root).write_config(
        {"server": "mbx2", "fqdn": "localhost", "directory_url": shared_directory}
    )
    other = Installation(home=other_root, env=dict(installation.env, POPGATE_HOME=str(other_root)))
    try:
        other.popgate("setup", "--roles", "Mailbox")
        other.backend_port = free_port()
        other.set("ProxyTargetPort", str(other.backend_port))
        other.add_mailbox("bob", PASSWORD)
        other.import_messages("bob", MESSAGES[:2], tmp_path / "eml")
        other.start_backend()
        # Only this computer's front end runs here; its own backend is not even started.
        installation.start_frontend()
        client = login(ssl_session(installation), "bob")
        _, lines, _ = client.retr(2)
        assert b"".join(line + b"\r\n" for line in lines) == to_crlf(MESSAGES[1])
        client.quit()
        assert "front end" in other.backend_log()
        assert "proxies bob" in other.backend_log()
    finally:
        other.stop_all()


class _OnConnectedSocket(poplib.POP3):
    """poplib on a socket connected (and TLS-wrapped) beforehand."""

    def __init__(self, connected: socket.socket) -> None:
        self._connected = connected
        super().__init__("127.0.0.1")

    def _create_socket(self, timeout: float | None) -> socket.socket:
        del timeout
        return self._connected


def test_a_stop_serves_to_its_end_a_tls_session_whose_handshake_ends_during_the_stop(
    installation: Installation, tmp_path: Path
) -> None:
    """Seen once in the soak: QUIT on port 995 got no answer 0.1 s into a front-end stop. A
    connection accepted before the listeners closed became a session during the stop, and
    the stop, which waited only for the sessions there when it began, cut it off as soon as
    those had ended."""
    for name in ("alice", "bob"):
        installation.add_mailbox(name, PASSWORD)
        installation.import_messages(name, MESSAGES, tmp_path / f"eml-{name}")
    installation.start_backend()
    frontend = installation.start_frontend()
    early = login(ssl_session(installation))
    raw = socket.create_connection(("127.0.0.1", installation.ssl_port), timeout=30)
    time.sleep(0.5)  # accepted; its TLS handshake waits for the client
    frontend.send_signal(signal.SIGTERM)
    log = installation.home / "frontend.log"
    deadline = time.monotonic() + 30
    while "MSExchangePOP3 is stopping" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    late = login(_OnConnectedSocket(insecure_client_context().wrap_socket(raw)), "bob")
    assert late.stat()[0] == len(MESSAGES)
    early.quit()
    time.sleep(0.5)  # the stop now has only the late session left
    late.dele(1)
    assert late.quit().startswith(b"+OK")
    assert frontend.wait(timeout=60) == 0
    assert "without UPDATE" not in log.read_text()
