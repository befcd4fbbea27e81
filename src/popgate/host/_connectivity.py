"""Test-PopConnectivity: log on to a Client Access server's POP3 front end as a mailbox.

Modelled on Exchange 2013's cmdlet (exchange-pop3.md section 5). The default mode is a
real round trip: a test message is delivered to the mailbox through MSExchangeDelivery
(LMTP), found over POP3 (UIDL, then TOP 0 to check its headers), deleted with DELE and QUIT,
and the store is then checked to no longer hold it. ``light_mode`` stops after the logon.
Without a credential the test account ``extest_<server>`` is used, created on first use or
by :func:`new_test_user` (New-TestCasConnectivityUser).

The POP3 conversation runs on asyncio streams and the sans-IO :class:`ClientConnection`, so
that the ``timeout`` of the whole test can cancel it at any point without a stray thread.
"""

# The cmdlet's name makes this a "test_" function with defaults, which is not a pytest test.
# ruff: noqa: PT028

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import formatdate
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

from popgate._setup import write_secret
from popgate.directory import (
    AlreadyExists,
    Directory,
    DirectoryError,
    Mailbox,
    PopSettings,
    Role,
    Server,
)
from popgate.home import Home
from popgate.protocol import (
    ClientConnection,
    Command,
    ConnectionClosed,
    Dele,
    Err,
    MessageBody,
    MultiLine,
    Ok,
    Pass,
    ProtocolError,
    Quit,
    Reply,
    Signal,
    Stls,
    Top,
    Uidl,
    User,
)
from popgate.services._runner import parse_binding
from popgate.store import MailboxLocked, MailboxNotFound, MaildirStore, StoreError

__all__ = [
    "LOCAL_SITE",
    "SCENARIO",
    "TEST_ID_HEADER",
    "ConnectionType",
    "ConnectivityResult",
    "new_test_user",
    "test_pop_connectivity",
]

#: popgate has no Active Directory sites; this is the name of Exchange's default site.
LOCAL_SITE: Final = "Default-First-Site-Name"
SCENARIO: Final = "Test POP3 Connectivity"
#: Marks the test message, so that it is told apart from the user's mail.
TEST_ID_HEADER: Final = "X-Popgate-Test-Id"
#: Exchange's ranges for -PerConnectionTimeout and -Timeout, in seconds.
MAX_PER_CONNECTION_TIMEOUT: Final = 120
MAX_TIMEOUT: Final = 3600
#: Seconds for each step of the LMTP delivery of the test message.
LMTP_TIMEOUT: Final = 30.0
#: How long to wait for the maildrop lock when the store is checked after the session.
LOCK_WAIT_SECONDS: Final = 5.0
_READ_CHUNK: Final = 65536
_R = TypeVar("_R", bound=Reply)
_Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

SUCCESS: Final = "Success"
FAILURE: Final = "Failure"
SKIPPED: Final = "Skipped"


class ConnectionType(StrEnum):
    """-ConnectionType: how the client secures the connection; parsed case-insensitively."""

    #: No TLS at all, on the UnencryptedOrTLSBindings port.
    PLAINTEXT = "Plaintext"
    #: Implicit TLS on the SSLBindings port.
    SSL = "Ssl"
    #: STLS on the UnencryptedOrTLSBindings port, then the logon.
    TLS = "Tls"

    @classmethod
    def _missing_(cls, value: object) -> ConnectionType | None:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectivityResult:
    """One output row of Test-PopConnectivity."""

    cas_server: str
    local_site: str
    scenario: str
    #: "Success", "Failure" or "Skipped".
    result: str
    #: Milliseconds from connect to the end of the logon; None when the logon did not finish.
    latency_ms: float | None
    #: Why the test failed or was skipped; empty on success.
    error: str
    #: The mailbox the test logged on as.
    mailbox: str

    def exchange_fields(self) -> dict[str, object]:
        """The row under the cmdlet's own column names (CasServer, Latency(MS), ...)."""
        return {
            "CasServer": self.cas_server,
            "LocalSite": self.local_site,
            "Scenario": self.scenario,
            "Result": self.result,
            "Latency(MS)": self.latency_ms,
            "Error": self.error,
        }


class _TestError(Exception):
    """Ends the test with ``result`` and the sentence in ``args[0]`` as its Error."""

    def __init__(self, message: str, result: str = FAILURE) -> None:
        super().__init__(message)
        self.result = result


@dataclass(slots=True)
class _Progress:
    """What is known so far, so that a timeout can still report the mailbox and latency."""

    cas_server: str
    mailbox: str = ""
    latency_ms: float | None = None

    def result(self, result: str, error: str = "") -> ConnectivityResult:
        return ConnectivityResult(
            cas_server=self.cas_server,
            local_site=LOCAL_SITE,
            scenario=SCENARIO,
            result=result,
            latency_ms=self.latency_ms,
            error=error,
            mailbox=self.mailbox,
        )


@dataclass(frozen=True, slots=True)
class _TestMessage:
    """The message put into the mailbox for the round trip, and where it went."""

    guid: uuid.UUID
    uid: str
    test_id: str
    message_id: str


async def test_pop_connectivity(
    home: Home,
    directory: Directory,
    *,
    client_access_server: str | None = None,
    mailbox_credential: tuple[str, str] | None = None,
    connection_type: ConnectionType = ConnectionType.SSL,
    port: int | None = None,
    light_mode: bool = False,
    per_connection_timeout: float = 120,
    timeout: float = 180,  # noqa: ASYNC109 - Exchange's -Timeout, applied with asyncio.timeout
    trust_any_ssl_certificate: bool = False,
    reset_test_account_credentials: bool = False,
) -> ConnectivityResult:
    """Test-PopConnectivity against the front end of ``client_access_server``.

    Every failure is reported in the result, never raised; only parameters outside
    Exchange's ranges raise :class:`ValueError` (the caller's mistake, not the server's).
    """
    kind = ConnectionType(connection_type)
    if not 0 < per_connection_timeout <= MAX_PER_CONNECTION_TIMEOUT:
        raise ValueError(
            f"PerConnectionTimeout must be more than 0 and at most "
            f"{MAX_PER_CONNECTION_TIMEOUT} seconds; got {per_connection_timeout}."
        )
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(
            f"Timeout must be more than 0 and at most {MAX_TIMEOUT} seconds; got {timeout}."
        )
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"PortClientAccessServer must be from 1 to 65535; got {port}.")
    progress = _Progress(cas_server=(client_access_server or home.server_name).lower())
    try:
        async with asyncio.timeout(timeout):
            await _run(
                progress,
                home,
                directory,
                credential=mailbox_credential,
                kind=kind,
                port=port,
                light_mode=light_mode,
                per_connection_timeout=per_connection_timeout,
                trust_any=trust_any_ssl_certificate,
                reset=reset_test_account_credentials,
            )
    except TimeoutError:
        return progress.result(
            FAILURE, f"The test did not finish within {timeout:g} seconds (Timeout)."
        )
    except _TestError as failed:
        return progress.result(failed.result, str(failed))
    except (DirectoryError, StoreError) as error:
        return progress.result(FAILURE, str(error))
    except OSError as error:
        # The connection's errors are sentences already; this is the store or the secrets.
        return progress.result(FAILURE, f"The test could not use its files: {error}.")
    return progress.result(SUCCESS)


async def _run(
    progress: _Progress,
    home: Home,
    directory: Directory,
    *,
    credential: tuple[str, str] | None,
    kind: ConnectionType,
    port: int | None,
    light_mode: bool,
    per_connection_timeout: float,
    trust_any: bool,
    reset: bool,
) -> None:
    """The whole test; raises :class:`_TestError` with the sentence to report."""
    local_name = home.server_name
    server = await directory.get_server(progress.cas_server)
    if server is None:
        raise _TestError(
            f"There is no server {progress.cas_server!r} in the directory; give the name of "
            "a Client Access server (the server list shows them)."
        )
    if Role.CLIENT_ACCESS not in server.roles:
        raise _TestError(
            f"{server.name} does not have the ClientAccess role, so MSExchangePOP3 does not "
            "run there; give a Client Access server."
        )
    settings = await directory.get_pop_settings(server.name, effective=True)
    host, port = _endpoint(server, settings, kind, port, local=server.name == local_name)

    mailbox: Mailbox | None
    if credential is None:
        mailbox, password = await _test_account(home, directory, reset=reset)
        user = mailbox.name
    else:
        user, password = credential
        mailbox = await directory.get_mailbox(user)
    progress.mailbox = user

    logon = _logon_commands(user, password)
    conversation = _Conversation(
        host=host,
        port=port,
        server=server,
        kind=kind,
        per_connection_timeout=per_connection_timeout,
        trust_any=trust_any,
    )
    if light_mode:
        await conversation.run(progress, logon, None)
        return

    if mailbox is None:
        raise _TestError(
            f"There is no mailbox {user!r}, so no test message can be put into it; check "
            "the name, or use -LightMode to test the logon only."
        )
    holder = mailbox.server or server.name
    if holder != local_name:
        raise _TestError(
            f"The mailbox {mailbox.name} is held by {holder}, and the test message can only "
            f"be put into the store of this computer ({local_name}); run the test on {holder} "
            "or use -LightMode to test the logon only.",
            SKIPPED,
        )
    store = MaildirStore(home.mail_root)
    if await _in_use(store, mailbox.guid):
        # The logon will meet [IN-USE]; a message put in now could not be taken out again.
        await conversation.run(progress, logon, None)
        raise _TestError(
            f"The mailbox {mailbox.name} was in use by another session when the test began, "
            "so no test message was put into it; run the test again."
        )
    message = await _put_test_message(home, mailbox, _fqdn(home))
    try:
        await conversation.run(progress, logon, message)
    except _TestError as failed:
        if await _take_out(store, message) is None:
            raise _TestError(
                f"{failed} The test message {message.message_id} is still in the mailbox, "
                "because another session holds it.",
                failed.result,
            ) from None
        raise
    except BaseException:
        # Cancelled by the Timeout: the test message must not stay behind either.
        await _take_out(store, message)
        raise
    outcome = await _take_out(store, message)
    if outcome is None:
        raise _TestError(
            "The session ended, but the mailbox stayed in use by another session, so the "
            f"store could not be checked for the test message {message.message_id}."
        )
    if outcome:
        raise _TestError(
            "The server acknowledged DELE and QUIT, but the store still held the test "
            "message afterwards; it has now been removed from the store directly."
        )


def _logon_commands(user: str, password: str) -> tuple[User, Pass]:
    """USER and PASS, checked before anything is put into the mailbox."""
    try:
        return User(name=user), Pass(password=password)
    except ProtocolError:
        raise _TestError(
            "The user name and the password must not be empty and must not contain line "
            "breaks or NUL characters."
        ) from None


# --- where to connect ---------------------------------------------------------------------


def _endpoint(
    server: Server, settings: PopSettings, kind: ConnectionType, port: int | None, *, local: bool
) -> tuple[str, int]:
    """Host and port of the front end, from its effective bindings (or the given port)."""
    setting = "SSLBindings" if kind is ConnectionType.SSL else "UnencryptedOrTLSBindings"
    bindings = (
        settings.ssl_bindings
        if kind is ConnectionType.SSL
        else settings.unencrypted_or_tls_bindings
    )
    candidates: list[tuple[_Address | None, int]] = [
        (ipaddress.ip_address(host), bound_port)
        for host, bound_port in map(parse_binding, bindings)
    ]
    if port is not None:
        candidates = [binding for binding in candidates if binding[1] == port] or [(None, port)]
    elif not candidates:
        raise _TestError(
            f"{server.name} has no {setting}, so MSExchangePOP3 listens on no port for "
            f"{kind} connections; give the port, or set {setting} and restart the service."
        )
    # IPv4 first: a [::] listener may be IPv6-only, and some containers have no ::1 at all.
    address, chosen = sorted(candidates, key=lambda c: c[0] is not None and c[0].version == 6)[0]
    if address is not None and not address.is_unspecified:
        return str(address), chosen
    if not local:
        return server.fqdn, chosen
    if address is not None and address.version == 6:
        return "::1", chosen
    return "127.0.0.1", chosen


def _fqdn(home: Home) -> str:
    return home.read_config().get("fqdn") or home.server_name


# --- the test account ---------------------------------------------------------------------


async def new_test_user(home: Home, directory: Directory, *, reset: bool = False) -> Mailbox:
    """New-TestCasConnectivityUser: create (or, with ``reset``, give a new password to) the
    test mailbox ``extest_<server>``; its password stays in the secrets folder."""
    try:
        mailbox, _ = await _test_account(home, directory, reset=reset)
    except _TestError as problem:
        raise DirectoryError(str(problem)) from None
    return mailbox


async def _test_account(home: Home, directory: Directory, *, reset: bool) -> tuple[Mailbox, str]:
    """The ``extest_<server>`` mailbox and its password, created or reset as needed."""
    local_name = home.server_name
    name = f"extest_{local_name}"[:64].rstrip(".")
    password_file = home.secrets_dir / "extest.password"
    try:
        password: str | None = password_file.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        password = None
    mailbox = await directory.get_mailbox(name)
    if mailbox is None:
        password = secrets.token_urlsafe(24)
        try:
            mailbox = await directory.add_mailbox(
                name, password=password, server=await _mailbox_server(directory, local_name)
            )
        except AlreadyExists:
            # A concurrent test created it first: use it, with a password of our own.
            mailbox = await directory.get_mailbox(name)
            if mailbox is None:
                raise
            await directory.set_password(name, password)
        else:
            await MaildirStore(home.mail_root).create_mailbox(mailbox.guid)
        write_secret(password_file, password)
    elif reset or password is None:
        password = secrets.token_urlsafe(24)
        await directory.set_password(name, password)
        write_secret(password_file, password)
    if mailbox.is_administrator:
        raise _TestError(
            f"The test mailbox {name} is an administrator, and POP3 refuses administrators; "
            f"remove it with 'popgate mailbox remove {name}' and run the test again."
        )
    if not mailbox.pop_enabled:
        raise _TestError(
            f"The test mailbox {name} has PopEnabled $false; run 'popgate mailbox set {name} "
            "--pop-enabled $true' and restart both POP3 services."
        )
    return mailbox, password


async def _mailbox_server(directory: Directory, local_name: str) -> str:
    """This computer when it has the Mailbox role (so the round trip can use its store)."""
    local = await directory.get_server(local_name)
    if local is not None and Role.MAILBOX in local.roles:
        return local.name
    for server in await directory.list_servers():
        if Role.MAILBOX in server.roles:
            return server.name
    raise _TestError(
        "No server has the Mailbox role, so the test mailbox has nowhere to live; "
        "run 'popgate setup' on a Mailbox server."
    )


# --- the test message ---------------------------------------------------------------------


async def _put_test_message(home: Home, mailbox: Mailbox, fqdn: str) -> _TestMessage:
    """Send a uniquely marked message to the mailbox through MSExchangeDelivery (LMTP on its
    Unix socket), the way mail arrives; its reply names the message's UID."""
    test_id = uuid.uuid4().hex
    message_id = f"<popgate-test.{test_id}@{fqdn}>"
    content = (
        f"From: Test-PopConnectivity <postmaster@{fqdn}>\r\n"
        f"To: <{mailbox.address}>\r\n"
        f"Subject: {SCENARIO}\r\n"
        f"Date: {formatdate(localtime=True)}\r\n"
        f"Message-ID: {message_id}\r\n"
        f"{TEST_ID_HEADER}: {test_id}\r\n"
        "\r\n"
        "This message was delivered by Test-PopConnectivity and is deleted by it.\r\n"
    ).encode("ascii")
    sender = f"postmaster@{fqdn}"
    try:
        code, reply = await asyncio.to_thread(
            _lmtp_send, home.lmtp_socket, sender, mailbox.address, content
        )
    except (OSError, smtplib.SMTPException) as error:
        raise _TestError(
            f"The test message could not be delivered: MSExchangeDelivery did not take it "
            f"over LMTP at {home.lmtp_socket} ({error}); check that it is Running "
            "('popgate net start MSExchangeDelivery')."
        ) from None
    text = reply.decode("utf-8", "replace")
    uid = text.rpartition(" Saved as ")[2].strip() if code == 250 else ""
    if not uid:
        raise _TestError(f"MSExchangeDelivery refused the test message: {code} {text}")
    return _TestMessage(guid=mailbox.guid, uid=uid, test_id=test_id, message_id=message_id)


def _lmtp_send(socket_path: Path, sender: str, recipient: str, content: bytes) -> tuple[int, bytes]:
    """One LMTP transaction with one recipient: the DATA reply (code, text)."""
    with smtplib.LMTP(str(socket_path), timeout=LMTP_TIMEOUT) as lmtp:
        lmtp.ehlo_or_helo_if_needed()
        lmtp.mail(sender)
        code, text = lmtp.rcpt(recipient)
        if code != 250:
            return code, text
        return lmtp.data(content)


async def _in_use(store: MaildirStore, guid: uuid.UUID) -> bool:
    """Whether another session holds the maildrop lock right now (it is taken and dropped)."""
    try:
        session = await store.open(guid)
    except MailboxLocked:
        return True
    except MailboxNotFound:
        return False
    await session.close()
    return False


async def _take_out(store: MaildirStore, message: _TestMessage) -> bool | None:
    """Remove the test message if the store still holds it: True if it did, False if it
    was gone, None if another session kept the maildrop lock throughout.

    The lock is waited for a little, for a session that is just ending.
    """
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            session = await store.open(message.guid)
            break
        except MailboxNotFound:
            return False
        except MailboxLocked:
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)
    if any(info.uid == message.uid for info in session.messages):
        await session.commit([message.uid])
        return True
    await session.close()
    return False


# --- the POP3 conversation ----------------------------------------------------------------


def _status_line(reply: Ok | Err) -> str:
    """The reply as the server sent it: ``-ERR [IN-USE] The mailbox is in use ...``."""
    parts = ["+OK" if isinstance(reply, Ok) else "-ERR"]
    if reply.code is not None:
        parts.append(f"[{reply.code.value}]")
    if reply.text:
        parts.append(reply.text)
    return " ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Conversation:
    """One POP3 session with the front end; every error becomes :class:`_TestError`."""

    host: str
    port: int
    server: Server
    kind: ConnectionType
    per_connection_timeout: float
    trust_any: bool

    @property
    def _where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.trust_any:
            # -TrustAnySSLCertificate: test the service even with its self-signed certificate.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def run(
        self, progress: _Progress, logon: tuple[User, Pass], message: _TestMessage | None
    ) -> None:
        """Connect, log on and, with a test message, find and delete it; then QUIT."""
        doing = f"connecting to {self._where}"
        try:
            started = time.perf_counter()
            tls = self._tls_context() if self.kind is not ConnectionType.PLAINTEXT else None
            async with asyncio.timeout(self.per_connection_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=tls if self.kind is ConnectionType.SSL else None,
                    server_hostname=self.server.fqdn if self.kind is ConnectionType.SSL else None,
                )
            try:
                session = _Session(reader, writer, self.per_connection_timeout)
                doing = "waiting for the greeting"
                await session.expect_ok(None, "The server did not greet")
                if self.kind is ConnectionType.TLS:
                    assert tls is not None
                    doing = "starting TLS (STLS)"
                    await session.expect_ok(Stls(), "The server refused STLS")
                    await session.start_tls(tls, self.server.fqdn)
                doing = "logging on"
                user, password = logon
                await session.expect_ok(user, f"The server refused USER {user.name}")
                await session.expect_ok(password, f"The logon as {user.name} failed")
                progress.latency_ms = round((time.perf_counter() - started) * 1000, 2)
                if message is not None:
                    doing = "looking for the test message"
                    await self._find_and_delete(session, message)
                doing = "ending the session (QUIT)"
                await session.expect_ok(Quit(), "The server refused QUIT")
            finally:
                await _close(writer, self.per_connection_timeout)
        except TimeoutError:
            raise _TestError(
                f"{self._where} did not answer within {self.per_connection_timeout:g} seconds "
                f"(PerConnectionTimeout) while {doing}."
            ) from None
        except ssl.SSLCertVerificationError as error:
            raise _TestError(
                f"The certificate of {self.server.fqdn} could not be verified "
                f"({error.verify_message}). Pass -TrustAnySSLCertificate to test anyway, or "
                "import a certificate that clients trust with 'popgate certificate import'."
            ) from None
        except ssl.SSLError as error:
            raise _TestError(
                f"The TLS handshake with {self._where} failed while {doing}: "
                f"{error.reason or error}."
            ) from None
        except ConnectionRefusedError:
            raise _TestError(
                f"The connection to {self._where} was refused: MSExchangePOP3 is not listening "
                f"there. Start it on {self.server.name} ('popgate net start MSExchangePOP3') "
                "or check the port."
            ) from None
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise _TestError(
                f"The connection to {self._where} failed while {doing}: {reason}."
            ) from None
        except ProtocolError as error:
            raise _TestError(
                f"{self._where} answered with something that is not POP3 while {doing}: {error}."
            ) from None

    async def _find_and_delete(self, session: _Session, message: _TestMessage) -> None:
        """UIDL to find the message, TOP 0 to check it is ours, DELE to delete it."""
        listing = await session.expect(Uidl(), MultiLine, "The server refused UIDL")
        number = next(
            (
                int(fields[0])
                for line in listing.lines
                if len(fields := line.split()) == 2 and fields[1] == message.uid
            ),
            None,
        )
        if number is None:
            raise _TestError(
                f"The test message {message.message_id} was put into the mailbox, but the "
                "server did not list it (UIDL)."
            )
        top = await session.expect(Top(msg=number, lines=0), MessageBody, "The server refused TOP")
        headers = BytesHeaderParser().parsebytes(top.content)
        if headers.get(TEST_ID_HEADER, "").strip() != message.test_id:
            raise _TestError(
                f"Message {number} has the test message's UID, but its headers (TOP) are not "
                f"those of {message.message_id}."
            )
        await session.expect_ok(Dele(msg=number), "The server refused DELE")


async def _close(writer: asyncio.StreamWriter, seconds: float) -> None:
    """Close the connection; a peer that does not finish the TLS shutdown is not waited for."""
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        async with asyncio.timeout(min(seconds, 5)):
            await writer.wait_closed()


class _Session:
    """Commands and replies over a stream, with :class:`ClientConnection` doing the parsing."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._seconds = seconds
        self._client = ClientConnection()

    async def _reply(self, command: Command | None) -> Reply:
        """Send ``command`` (None: just read, e.g. the greeting) and return its reply."""
        if command is not None:
            self._writer.write(self._client.send(command))
            async with asyncio.timeout(self._seconds):
                await self._writer.drain()
        while True:
            event = self._client.next_event()
            if event is Signal.NEED_DATA:
                async with asyncio.timeout(self._seconds):
                    data = await self._reader.read(_READ_CHUNK)
                self._client.receive_data(data)
            elif isinstance(event, (ConnectionClosed, Signal)):
                raise _TestError("The server closed the connection without replying.")
            else:
                return event

    async def expect_ok(self, command: Command | None, refused: str) -> Ok:
        """The +OK reply to ``command``; a -ERR ends the test with ``refused: -ERR ...``."""
        return await self.expect(command, Ok, refused)

    async def expect(self, command: Command | None, kind: type[_R], refused: str) -> _R:
        """The reply to ``command``, which must be of type ``kind``."""
        reply = await self._reply(command)
        if isinstance(reply, kind):
            return reply
        if isinstance(reply, Err):
            raise _TestError(f"{refused}: {_status_line(reply)}")
        raise _TestError(f"{refused}: unexpected reply {type(reply).__name__}.")

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Upgrade the connection after STLS's +OK (RFC 2595 section 4)."""
        async with asyncio.timeout(self._seconds):
            await self._writer.start_tls(context, server_hostname=server_hostname)
        self._client.start_tls_done()
