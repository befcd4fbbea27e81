"""MSExchangePOP3, the Microsoft Exchange POP3 service (Client Access role).

Clients connect on UnencryptedOrTLSBindings (110, plain text with STLS) and SSLBindings (995,
implicit TLS). The front end authenticates the client against the directory, finds the
Mailbox server that holds the mailbox, opens a session to that server's POP3 Backend service
as a trusted front end (the Unix socket when it is this computer, TLS on ProxyTargetPort
otherwise), and from then on relays bytes both ways without parsing them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from popgate.directory import (
    Directory,
    DirectoryUnavailable,
    LoginType,
    Mailbox,
    PopSettings,
    Server,
)
from popgate.home import Home
from popgate.net import SessionTimers, pinned_context
from popgate.protocol import (
    Auth,
    Capa,
    ClientConnection,
    Command,
    ConnectionClosed,
    Err,
    MultiLine,
    Ok,
    Quit,
    Reply,
    ResponseCode,
    ServerConnection,
    Signal,
    State,
    Stls,
    Utf8,
    Xclient,
    capabilities,
    parse_command,
    plain_initial_response,
)
from popgate.services._backend import (
    FRONTEND_PRINCIPAL_PREFIX,
    IDLE_TIMEOUT_ATTRIBUTE,
    MAX_COMMAND_SIZE_ATTRIBUTE,
    SIGN_OFF,
)
from popgate.services._login import LOGON_FAILURE, LockedOutWhileWaitingError, LoginSession
from popgate.services._metrics import ServiceMetrics
from popgate.services._protocol_log import ProtocolLog
from popgate.services._throttle import LoginThrottle, PasswordCheckShares

__all__ = ["ConnectionLimits", "FrontendConfig", "FrontendSession"]

logger = logging.getLogger("popgate.frontend")

#: Seconds to reach a backend.
BACKEND_TIMEOUT = 15.0
#: Seconds for the backend's greeting and its answer to the proxied login, which opens the
#: maildrop: the first open of a very big one reads every file (200,000 messages took 20 s
#: on a busy two-core server), and a client that waits is better served than one told to
#: come back while the backend finishes the work anyway.
BACKEND_LOGIN_TIMEOUT = 120.0
#: Bytes moved per read while relaying, and the write buffer allowed before waiting: large
#: enough that a RETR of megabytes moves in few loop iterations.
RELAY_CHUNK = 1 << 20
#: Codes a backend may answer AUTH with that the client must see unchanged (RFC 2449/3206).
RELAYED_CODES = frozenset({ResponseCode.IN_USE, ResponseCode.LOGIN_DELAY})
BACKEND_UNAVAILABLE = Err(
    "The mailbox server is not available right now; try again later.", ResponseCode.SYS_TEMP
)


@dataclass
class ConnectionLimits:
    """MaxConnections, MaxConnectionFromSingleIP and MaxConnectionsPerUser, counted live."""

    max_connections: int
    max_per_address: int
    max_per_user: int
    total: int = 0
    per_address: Counter[str] = field(default_factory=Counter)
    per_user: Counter[str] = field(default_factory=Counter)

    def admit(self, address: str) -> str | None:
        """Count a new connection; the reason it is refused (and not counted), or None."""
        if self.total >= self.max_connections:
            return "MaxConnections"
        if self.per_address[address] >= self.max_per_address:
            return "MaxConnectionFromSingleIP"
        self.total += 1
        self.per_address[address] += 1
        return None

    def release(self, address: str) -> None:
        """A connection admitted by :meth:`admit` has ended."""
        self.total -= 1
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]

    def admit_user(self, user: str) -> bool:
        """Count a logged-on session of ``user``; False when the user is at the limit."""
        if self.per_user[user] >= self.max_per_user:
            return False
        self.per_user[user] += 1
        return True

    def release_user(self, user: str) -> None:
        """A session counted by :meth:`admit_user` has ended."""
        self.per_user[user] -= 1
        if self.per_user[user] <= 0:
            del self.per_user[user]


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontendConfig:
    """What every front-end session shares."""

    directory: Directory
    server: Server
    settings: PopSettings
    home: Home
    tls: ssl.SSLContext
    #: Client contexts pinned to each Mailbox server's registered certificate, by PEM.
    backend_tls: dict[str, ssl.SSLContext] = field(default_factory=dict)
    proxy_secret: str
    limits: ConnectionLimits
    throttle: LoginThrottle
    metrics: ServiceMetrics
    password_checks: PasswordCheckShares = field(default_factory=PasswordCheckShares)
    #: This process's protocol log; None when ProtocolLogEnabled is off.
    protocol_log: ProtocolLog | None = None


class FrontendSession(LoginSession):
    """One client session on MSExchangePOP3, up to the hand-off to the backend."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        config: FrontendConfig,
        *,
        implicit_tls: bool,
    ) -> None:
        settings = config.settings
        super().__init__(
            reader,
            writer,
            ServerConnection(max_command_size=settings.max_command_size, tls_active=implicit_tls),
            SessionTimers(
                pre_authenticated=settings.pre_authenticated_connection_timeout.total_seconds(),
                authenticated=settings.authenticated_connection_timeout.total_seconds(),
            ),
        )
        self.config = config
        self.directory = config.directory
        self.metrics = config.metrics
        self.start_protocol_log(config.protocol_log)
        if not implicit_tls:
            self.tls_context = config.tls
        self.client_address = self.peer.rpartition(":")[0].strip("[]") or self.peer
        self.user_counted: str | None = None
        self.backend: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        #: Set when a limit was hit: the reply is sent, then the connection is closed.
        self.close_after_reply = False

    def greeting(self) -> Ok:
        """The banner from the effective settings."""
        return Ok(self.config.settings.banner)

    # -- LoginType -----------------------------------------------------------------------

    @property
    def _cleartext_allowed(self) -> bool:
        """USER/PASS, PLAIN and LOGIN: under TLS, or anywhere with PlainTextLogin."""
        return (
            self.connection.tls_active
            or self.config.settings.login_type is LoginType.PLAIN_TEXT_LOGIN
        )

    @property
    def _any_login_allowed(self) -> bool:
        """SecureLogin requires TLS before any authentication, SCRAM included."""
        return (
            self.connection.tls_active
            or self.config.settings.login_type is not LoginType.SECURE_LOGIN
        )

    def mechanisms(self) -> list[str]:
        """What LoginType allows on this connection now."""
        mechanisms = []
        if self._cleartext_allowed:
            mechanisms += ["PLAIN", "LOGIN"]
        if self._any_login_allowed:
            mechanisms.append("SCRAM-SHA-256")
        return mechanisms

    def _tls_required(self) -> Err:
        return Err("Clear-text logins are disabled on this connection; send STLS first.")

    # -- commands ------------------------------------------------------------------------

    async def handle(self, command: Command) -> Reply:
        """Answer a command of the AUTHORIZATION phase (the backend answers the rest)."""
        if (login_reply := await self.handle_login(command)) is not None:
            return login_reply
        match command:
            case Capa():
                lines = capabilities(
                    stls=not self.connection.tls_active,
                    user=self._cleartext_allowed,
                    sasl=self.mechanisms(),
                    implementation="popgate MSExchangePOP3",
                )
                return MultiLine(status=Ok("Capability list follows"), lines=lines)
            case Stls():
                if self.connection.tls_active:
                    return Err("Command is not valid in this state.")
                return Ok("Begin TLS negotiation.")
            case Utf8():
                return Ok("UTF8 enabled")
            case Quit():
                return Ok(SIGN_OFF)
            case Xclient():
                # Only front ends may say who the client is, and clients are not front ends.
                return Err("Command is not valid in this state.")
        return Err("Command is not valid in this state.")

    def user_refusal(self) -> Err | None:
        """USER only where LoginType allows a clear-text password."""
        return None if self._cleartext_allowed else self._tls_required()

    def unsupported_mechanism(self, name: str) -> Err:
        """Before TLS, password mechanisms are refused for want of TLS, not as unknown."""
        if not self._any_login_allowed or name in ("PLAIN", "LOGIN"):
            return self._tls_required()
        return super().unsupported_mechanism(name)

    def locked_out(self, user: str) -> Err | None:
        """[LOGIN-DELAY] without checking credentials, while a run of failures lasts."""
        wait = self.config.throttle.locked_for(self.client_address, user)
        if wait <= 0:
            return None
        self.note("LoginDelay")
        self.log.warning(
            "authentication refused: rhost=%s user=%r session=%s reason=locked out for %.0f s",
            self.client_address,
            user[:64],
            self.session_id,
            wait,
            extra={"event": "login_locked_out", "user": user[:64]},
        )
        seconds = max(1, round(wait))
        return Err(
            f"Too many failed logins; try again in {seconds} seconds.", ResponseCode.LOGIN_DELAY
        )

    @contextlib.asynccontextmanager
    async def password_check_turn(self, user: str) -> AsyncIterator[None]:
        """This client address's turn at the password checks, unless a lockout began while
        it waited (the guesses queued behind a lockout cost no argon2id)."""
        async with self.config.password_checks.turn(self.client_address):
            if locked := self.locked_out(user):
                raise LockedOutWhileWaitingError(locked)
            yield

    async def logon_failure(self, user: str, reason: str) -> Err:
        # One line a fail2ban filter can match (contrib/fail2ban); user names are escaped.
        self.note("AuthFailed")
        self.log.warning(
            "authentication failure: rhost=%s user=%r session=%s reason=%s",
            self.client_address,
            user[:64],
            self.session_id,
            reason,
            extra={"event": "login_failed", "user": user[:64]},
        )
        # Unknown users and wrong passwords take the same path, so the same time.
        await asyncio.sleep(self.config.throttle.failed(self.client_address, user))
        return Err(LOGON_FAILURE, ResponseCode.AUTH)

    async def authenticated(self, mailbox: Mailbox) -> Reply:
        """Count the session against MaxConnectionsPerUser and open it on the backend."""
        self.config.throttle.succeeded(mailbox.name)
        limits = self.config.limits
        if not limits.admit_user(mailbox.name):
            self.note("UserConnectionLimitReached")
            self.log.info(
                "session %s: %s refused, Msg=UserConnectionLimitReached",
                self.session_id,
                mailbox.name,
                extra={"event": "login_refused", "user": mailbox.name},
            )
            self.close_after_reply = True
            return Err(
                "Too many sessions for this user; close another one first.",
                ResponseCode.SYS_TEMP,
            )
        self.user_counted = mailbox.name
        reply = await self._open_backend(mailbox)
        if not isinstance(reply, Ok):
            limits.release_user(mailbox.name)
            self.user_counted = None
        return reply

    async def _open_backend(self, mailbox: Mailbox) -> Reply:
        try:
            reader, writer = await asyncio.wait_for(self._connect_backend(mailbox), BACKEND_TIMEOUT)
        except (OSError, TimeoutError, ssl.SSLError, DirectoryUnavailable) as error:
            self.metrics.error("proxy")
            self.note("ProxyFailed")
            self.log.warning(
                "session %s: backend for %s unreachable: %r",
                self.session_id,
                mailbox.name,
                error,
                extra={"event": "proxy_failed", "user": mailbox.name},
            )
            return BACKEND_UNAVAILABLE
        try:
            reply = await asyncio.wait_for(
                self._backend_login(reader, writer, mailbox), BACKEND_LOGIN_TIMEOUT
            )
        except (OSError, TimeoutError, ssl.SSLError, BackendProtocolError) as error:
            self.metrics.error("proxy")
            self.note("ProxyFailed")
            self.log.warning(
                "session %s: backend login failed: %r",
                self.session_id,
                error,
                extra={"event": "proxy_failed", "user": mailbox.name},
            )
            reply = BACKEND_UNAVAILABLE
        if isinstance(reply, Ok):
            self.backend = (reader, writer)
            self.note(f"Proxy={mailbox.server or self.config.server.name}")
            self.log.info(
                "session %s: %s logged on from %s",
                self.session_id,
                mailbox.name,
                self.peer,
                extra={"event": "login", "user": mailbox.name},
            )
            return Ok("User successfully logged on.")
        writer.close()
        return reply

    async def _connect_backend(
        self, mailbox: Mailbox
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        config = self.config
        target = mailbox.server or config.server.name
        if target == config.server.name:
            return await asyncio.open_unix_connection(
                str(config.home.backend_socket), limit=RELAY_CHUNK
            )
        server = await config.directory.get_server(target)
        if server is None:
            raise OSError(f"mailbox server {target!r} is not in the directory")
        if server.certificate_pem is None:
            raise OSError(f"mailbox server {target!r} has registered no certificate yet")
        context = config.backend_tls.get(server.certificate_pem)
        if context is None:
            context = config.backend_tls[server.certificate_pem] = pinned_context(
                server.certificate_pem
            )
        settings = await config.directory.get_pop_settings(target, effective=True)
        return await asyncio.open_connection(
            server.proxy_host,
            settings.proxy_target_port,
            ssl=context,
            server_hostname=server.proxy_host,
            limit=RELAY_CHUNK,
        )

    async def _backend_login(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mailbox: Mailbox
    ) -> Reply:
        client = ClientConnection()

        async def reply() -> Reply:
            while True:
                event = client.next_event()
                if event is Signal.NEED_DATA:
                    client.receive_data(await reader.read(RELAY_CHUNK))
                elif isinstance(event, ConnectionClosed) or event is Signal.PAUSED:
                    raise BackendProtocolError(f"backend ended the session ({event!r})")
                else:
                    return event

        if not isinstance(await reply(), Ok):
            raise BackendProtocolError("backend greeting was not +OK")
        host, _, port = self.peer.rpartition(":")
        settings = self.config.settings
        attributes = {
            "ADDR": host.strip("[]") or "unknown",
            "SESSION": self.session_id,
            # Client Access settings that govern the rest of the session, which the backend
            # parses: with the roles split, this server's values apply, not the backend's.
            MAX_COMMAND_SIZE_ATTRIBUTE: str(settings.max_command_size),
            IDLE_TIMEOUT_ATTRIBUTE: str(
                int(settings.authenticated_connection_timeout.total_seconds())
            ),
        }
        if port.isdigit():
            attributes["PORT"] = port
        writer.write(client.send(Xclient(attributes=attributes)))
        if not isinstance(await reply(), Ok):
            raise BackendProtocolError("backend refused XCLIENT")
        identity = FRONTEND_PRINCIPAL_PREFIX + self.config.server.name
        token = plain_initial_response(mailbox.name, identity, self.config.proxy_secret)
        writer.write(client.send(Auth(mechanism="PLAIN", initial_response=token)))
        answer = await reply()
        if isinstance(answer, Ok):
            return answer
        if isinstance(answer, Err) and answer.code in RELAYED_CODES:
            return answer
        raise BackendProtocolError(f"backend refused the proxied login: {answer!r}")

    # -- relaying ------------------------------------------------------------------------

    async def hand_off(self) -> bool:
        """Once logged on, relay the rest of the session to the backend byte for byte."""
        if self.close_after_reply:
            return True
        if self.backend is None:
            return False
        _, backend_writer = self.backend
        self.ended_without_quit = "proxied"
        for writer in (backend_writer, self.writer):
            writer.transport.set_write_buffer_limits(high=RELAY_CHUNK)
        idle = self.config.settings.authenticated_connection_timeout.total_seconds()
        last_activity = [time.monotonic()]
        quit_watch = QuitWatch()

        def sent_to_client(size: int) -> None:
            last_activity[0] = time.monotonic()
            self.on_sent(size)

        async def pump_upstream() -> None:
            # Commands the client pipelined behind its login go to the backend first.
            data, eof = self.connection.trailing_data
            while True:
                if backend_writer.transport.is_closing():
                    # The backend ended the session (an idle timeout) while the client still
                    # sent: uvloop raises on a closed transport.
                    return
                if data:
                    backend_writer.write(quit_watch.up_to_quit(data))
                    await backend_writer.drain()
                    if quit_watch.quit_relayed:
                        # The backend answers QUIT and closes. Nothing more may be written
                        # to it: a write racing that close fails, and the failed transport
                        # drops the QUIT reply still unread. What the client sends after
                        # QUIT is never read, as on any POP3 server.
                        await asyncio.wait_for(asyncio.shield(ended), max(idle, 1))
                        return
                if eof:
                    # The client half-closed after its last commands: the backend must still
                    # answer them (as the front end does before the hand-off), then it closes,
                    # which ends the relay. A TLS connection to a backend has no half-close.
                    if backend_writer.can_write_eof():
                        backend_writer.write_eof()
                        await asyncio.wait_for(asyncio.shield(ended), max(idle, 1))
                    return
                remaining = last_activity[0] + idle - time.monotonic()
                try:
                    data = await asyncio.wait_for(self.reader.read(RELAY_CHUNK), max(remaining, 0))
                except TimeoutError:
                    if time.monotonic() - last_activity[0] < idle:
                        continue
                    self.log.info("session %s timed out while relaying", self.session_id)
                    return
                eof = not data
                if data:
                    last_activity[0] = time.monotonic()

        # Replies (RETR's megabytes) go from the backend's transport straight into the
        # client's, with no stream buffer, task or drain between them; commands, which are
        # few and small, keep the stream path above, with its idle timeout.
        client_transport, backend_transport = self.writer.transport, backend_writer.transport
        client_protocol, backend_protocol = (
            client_transport.get_protocol(),
            backend_transport.get_protocol(),
        )
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client_transport.set_protocol(_ClientSide(client_protocol, backend_transport))
        backend_transport.set_protocol(
            _BackendSide(backend_protocol, client_transport, sent_to_client, ended)
        )
        upstream = asyncio.ensure_future(pump_upstream())
        try:
            # The backend closing (after QUIT's reply) ends it; the client may still read.
            await asyncio.wait({upstream, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            upstream.cancel()
            with contextlib.suppress(asyncio.CancelledError, *RELAY_ERRORS):
                await upstream
            if not client_transport.is_closing():
                client_transport.set_protocol(client_protocol)
            if not backend_transport.is_closing():
                backend_transport.set_protocol(backend_protocol)
        return True

    async def finish(self, *, quit_received: bool) -> None:
        """Close the backend session (no QUIT means no UPDATE there) and release counters."""
        del quit_received
        if self.backend is not None:
            _, backend_writer = self.backend
            self.backend = None
            with contextlib.suppress(*RELAY_ERRORS):
                backend_writer.close()
                await asyncio.wait_for(backend_writer.wait_closed(), 5)
        if self.user_counted is not None:
            self.config.limits.release_user(self.user_counted)
            self.user_counted = None


RELAY_ERRORS = (ConnectionError, OSError, ssl.SSLError, TimeoutError)


class _ClientSide(asyncio.Protocol):
    """The client's transport while relaying: the session's stream protocol still gets every
    event, and the backend stops being read while the client is not keeping up."""

    def __init__(self, stream: asyncio.BaseProtocol, backend: asyncio.BaseTransport) -> None:
        self.stream = stream
        self.backend = backend

    def data_received(self, data: bytes) -> None:
        """Commands go to the session's stream, which the upstream pump reads."""
        assert isinstance(self.stream, asyncio.Protocol)
        self.stream.data_received(data)

    def eof_received(self) -> bool | None:
        """The client closed its side: the stream sees the end."""
        assert isinstance(self.stream, asyncio.Protocol)
        return self.stream.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the stream, so the session's writer knows it is closed."""
        self.stream.connection_lost(exc)

    def pause_writing(self) -> None:
        """The client's buffer is full: read nothing more from the backend for now."""
        self.stream.pause_writing()
        if isinstance(self.backend, asyncio.ReadTransport) and not self.backend.is_closing():
            self.backend.pause_reading()

    def resume_writing(self) -> None:
        """The client caught up: read the backend again."""
        self.stream.resume_writing()
        if isinstance(self.backend, asyncio.ReadTransport) and not self.backend.is_closing():
            self.backend.resume_reading()


class _BackendSide(asyncio.Protocol):
    """The backend's transport while relaying: what it sends is written to the client as it
    arrives; its end (or loss) ends the relay."""

    def __init__(
        self,
        stream: asyncio.BaseProtocol,
        client: asyncio.WriteTransport,
        on_sent: Callable[[int], None],
        ended: asyncio.Future[None],
    ) -> None:
        self.stream = stream
        self.client = client
        self.on_sent = on_sent
        self.ended = ended

    def data_received(self, data: bytes) -> None:
        """Pass the bytes on, untouched."""
        if not self.client.is_closing():
            self.client.write(data)
            self.on_sent(len(data))

    def eof_received(self) -> bool | None:
        """The backend is done (after QUIT, or it went away)."""
        self._end()
        assert isinstance(self.stream, asyncio.Protocol)
        return self.stream.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        """End the relay and let the stream (and its writer) know."""
        self._end()
        self.stream.connection_lost(exc)

    def pause_writing(self) -> None:
        """Flow control of commands sent to the backend stays with the stream."""
        self.stream.pause_writing()

    def resume_writing(self) -> None:
        """See :meth:`pause_writing`."""
        self.stream.resume_writing()

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


class QuitWatch:
    """Finds where the client's QUIT ends in the command bytes relayed to a backend, with the
    backend's own parser, so that nothing after it is written to a backend that is closing."""

    #: Longer lines are never QUIT; only this much of a line is kept while it is incomplete.
    LONGEST_QUIT_LINE = 16

    def __init__(self) -> None:
        self._line = bytearray()
        self._too_long = False
        self.quit_relayed = False

    def up_to_quit(self, data: bytes) -> bytes:
        """``data`` up to and including the line that is QUIT; all of it when there is none."""
        start = 0
        while (lf := data.find(b"\n", start)) >= 0:
            self._keep(data[start:lf])
            start = lf + 1
            line = bytes(self._line).removesuffix(b"\r")
            is_quit = not self._too_long and isinstance(
                parse_command(line, State.TRANSACTION), Quit
            )
            self._line.clear()
            self._too_long = False
            if is_quit:
                self.quit_relayed = True
                return data[:start]
        self._keep(data[start:])
        return data

    def _keep(self, part: bytes) -> None:
        if len(self._line) + len(part) > self.LONGEST_QUIT_LINE:
            self._too_long = True
        else:
            self._line += part


class BackendProtocolError(Exception):
    """The backend answered something a front end cannot work with."""


def _may_act_as(mailbox: Mailbox, authzid: str) -> bool:
    """RFC 4616: an authorization identity other than the user's own is refused."""
    return not authzid or authzid.casefold() in (
        mailbox.name.casefold(),
        mailbox.address.casefold(),
    )
