"""The asyncio session driver: moves bytes between a stream and a sans-IO ServerConnection.

Subclasses answer commands; the driver owns reading, writing, timers and the error policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from popgate.protocol import (
    BadCommand,
    Command,
    ConnectionClosed,
    Err,
    Ok,
    RemoteProtocolError,
    Reply,
    ResponseCode,
    SaslCancel,
    SaslResponse,
    ServerConnection,
    Signal,
    State,
)

__all__ = [
    "SESSION_RESULTS",
    "Exchange",
    "SessionDriver",
    "SessionLogAdapter",
    "SessionTimers",
    "format_address",
]

logger = logging.getLogger("popgate.session")

#: Bytes read from the socket at once; the engine bounds what it buffers.
READ_SIZE = 65536
#: Lines of an AUTH exchange after the AUTH command itself: not commands of their own.
SASL_CONTINUATIONS = (SaslResponse, SaslCancel)
#: How a session can end, as :meth:`SessionDriver.on_end` reports it.
SESSION_RESULTS = ("quit", "proxied", "disconnected", "timeout", "abuse", "shutdown", "error")
#: The ``event`` of the log lines that say how a session ended (structured logs).
SESSION_END = {"event": "session_end"}
#: Expected errors while closing a transport that the peer may already have dropped.
CLOSE_ERRORS = (ConnectionError, ssl.SSLError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One line the peer sent and the reply to it, as :meth:`SessionDriver.on_exchange` sees it."""

    #: The command, or None for a line that is not a valid command now.
    command: Command | None
    #: The POP3 verb the line started with (upper case), or None when it had none.
    verb: str | None
    reply: Reply
    #: Octets of the request line (CRLF counted) and of the reply.
    request_size: int
    reply_size: int
    #: From reading the line to having written the reply.
    seconds: float


class SessionLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds the session's fields to every record, merged with a call's own ``extra``.

    The structured log format (``services/_logformat.py``) writes them as JSON fields.
    """

    def process(
        self, msg: object, kwargs: MutableMapping[str, Any]
    ) -> tuple[object, MutableMapping[str, Any]]:
        """Merge the adapter's fields under the call's (the stdlib adapter replaces them)."""
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class SessionTimers:
    """Exchange's two idle limits.

    Before authentication the deadline runs from the connection's start and commands do not
    reset it (MS-STANXIMAP 2.2.10); after authentication every valid command resets it.
    """

    def __init__(self, *, pre_authenticated: float, authenticated: float) -> None:
        self._pre_authenticated = pre_authenticated
        self._authenticated = authenticated
        self._deadline = time.monotonic() + pre_authenticated
        self._authenticated_phase = False

    def use_authenticated_timeout(self, seconds: float) -> None:
        """Change the idle limit after authentication (before it begins to count)."""
        self._authenticated = seconds

    def command_answered(self, state: State) -> None:
        """Account for one valid command answered in ``state``."""
        if state in (State.TRANSACTION, State.UPDATE):
            self._authenticated_phase = True
        if self._authenticated_phase:
            self._deadline = time.monotonic() + self._authenticated

    def remaining(self) -> float:
        """Seconds until the session times out."""
        return max(0.0, self._deadline - time.monotonic())


class SessionDriver:
    """Runs one POP3 session: greeting, command loop, clean close.

    Subclasses implement :meth:`greeting` and :meth:`handle`, and may override
    :meth:`finish` (called once on every exit path, with ``quit_received`` telling whether
    the session ended by QUIT).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: ServerConnection,
        timers: SessionTimers,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.connection = connection
        self.timers = timers
        #: Seconds to wait for the peer's side of a TLS close before dropping the connection.
        self.close_grace = 5.0
        self.session_id = secrets.token_hex(8)
        #: The context for STLS; None where STLS is not offered.
        self.tls_context: ssl.SSLContext | None = None
        peer = writer.get_extra_info("peername")
        self.peer = format_address(peer)
        self.log = SessionLogAdapter(
            logger, {"session": self.session_id, "client": _host_of(peer) or self.peer}
        )

    def greeting(self) -> Ok:
        """The greeting line."""
        raise NotImplementedError

    async def handle(self, command: Command) -> Reply:
        """The reply to one command."""
        raise NotImplementedError

    async def finish(self, *, quit_received: bool) -> None:
        """Release what the session holds; runs exactly once."""

    # Observation hooks for counters: the driver calls them, subclasses decide what to count.

    def on_start(self) -> None:
        """The session begins (before the greeting)."""

    def on_command(self, verb: str) -> None:
        """A command was answered (``INVALID`` for a line that is not a valid command)."""
        del verb

    def on_sent(self, size: int) -> None:
        """``size`` bytes were written to the peer."""
        del size

    def on_end(self, result: str, seconds: float) -> None:
        """The session is over, after ``seconds``; ``result`` is one of SESSION_RESULTS."""
        del result, seconds

    def on_exchange(self, exchange: Exchange) -> None:
        """A line was answered (the protocol log writes one row per exchange)."""
        del exchange

    async def run(self) -> None:
        """Drive the session until QUIT, EOF, timeout, abuse or cancellation."""
        quit_received = False
        #: How the session ended; the exception handlers below refine it.
        result = "error"
        started = time.monotonic()
        self.on_start()
        try:
            await self._write(self.connection.send(self.greeting()))
            quit_received = await self._loop()
            result = "quit" if quit_received else self.ended_without_quit
        except TimeoutError:
            result = "timeout"
            self.log.info(
                "session %s timed out (%s)", self.session_id, self.peer, extra=SESSION_END
            )
        except RemoteProtocolError as error:
            result = "abuse"
            self.log.info(
                "session %s closed for abuse: %s", self.session_id, error, extra=SESSION_END
            )
            if error.reply_hint is not None:
                with contextlib.suppress(*CLOSE_ERRORS):
                    await self._write(_encode_hint(error.reply_hint))
        except CLOSE_ERRORS as error:
            result = "disconnected"
            self.log.info(
                "session %s lost its connection: %r", self.session_id, error, extra=SESSION_END
            )
        except asyncio.CancelledError:
            result = "shutdown"
            self.log.info("session %s closed by shutdown", self.session_id, extra=SESSION_END)
            # A stopping service must not wait on idle clients to acknowledge close_notify.
            self.close_grace = 0.5
            raise
        except Exception:
            self.log.exception("session %s failed", self.session_id, extra=SESSION_END)
            with contextlib.suppress(*CLOSE_ERRORS):
                await self._write(
                    _encode_hint(
                        Err("Internal server error; try again later.", ResponseCode.SYS_TEMP)
                    )
                )
        finally:
            try:
                await self.finish(quit_received=quit_received)
            finally:
                await self.close()
                self.on_end(result, time.monotonic() - started)

    async def _loop(self) -> bool:
        connection = self.connection
        while True:
            event = connection.next_event()
            if event is Signal.NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), self.timers.remaining())
                connection.receive_data(data)
            elif isinstance(event, ConnectionClosed):
                return False
            elif isinstance(event, BadCommand):
                started = time.monotonic()
                sent = connection.send(event.reply)
                await self._write(sent)
                self.on_command("INVALID")
                self._exchanged(None, event.reply, len(sent), started)
            elif event is Signal.PAUSED:
                # Only TLS_PENDING pauses with no command in flight, and _upgrade resolves it.
                raise RuntimeError(f"session paused in state {connection.state}")
            else:
                started = time.monotonic()
                reply = await self.handle(event)
                sent = connection.send(reply)
                await self._write(sent)
                self._exchanged(event, reply, len(sent), started)
                if not isinstance(event, SASL_CONTINUATIONS):
                    self.on_command(type(event).__name__.upper())
                self.timers.command_answered(connection.state)
                if connection.state is State.CLOSED:
                    return True
                if connection.state is State.TLS_PENDING:
                    await self._upgrade()
                if await self.hand_off():
                    return False

    def _exchanged(
        self, command: Command | None, reply: Reply, reply_size: int, started: float
    ) -> None:
        connection = self.connection
        self.on_exchange(
            Exchange(
                command=command,
                verb=connection.last_verb,
                reply=reply,
                request_size=connection.last_line_size,
                reply_size=reply_size,
                seconds=time.monotonic() - started,
            )
        )

    #: How a session that ended without QUIT and without error ended: the peer closed it, or
    #: (a proxy) the relay ended it.
    ended_without_quit = "disconnected"

    async def hand_off(self) -> bool:
        """After each reply: take the connection over (a proxy relays it); True when done."""
        return False

    async def _upgrade(self) -> None:
        """STLS was accepted: handshake, then forget everything from the plaintext phase."""
        if self.tls_context is None:
            raise RuntimeError("STLS accepted without a TLS context")
        # Plaintext the peer sent after STLS may already sit in the stream's own buffer; it
        # must be dropped, never read as if it came through TLS (CVE-2011-0411 class).
        # StreamReader has no public way to do that, so clear its buffer directly.
        stream_buffer: bytearray = vars(self.reader)["_buffer"]
        stream_buffer.clear()
        await self.writer.start_tls(self.tls_context, ssl_handshake_timeout=30)
        self.connection.start_tls_done()

    async def _write(self, data: bytes) -> None:
        if self.writer.transport.is_closing():
            # The peer reset the connection while a reply was being prepared. uvloop raises
            # RuntimeError for a write to a closed transport (asyncio ignores it): report it
            # as the lost connection it is.
            raise ConnectionResetError("Connection lost")
        self.writer.write(data)
        self.on_sent(len(data))
        await self.writer.drain()
        if self.writer.get_extra_info("ssl_object") is not None:
            # drain() does not yield when nothing is buffered, so pipelined commands are
            # answered in a tight loop; a TLS transport learns that its peer has gone only in
            # a later turn of the loop, and warns at every write until then.
            await asyncio.sleep(0)

    async def close(self) -> None:
        """Close the transport, sending TLS close_notify where TLS is up."""
        writer = self.writer
        with contextlib.suppress(*CLOSE_ERRORS):
            if (
                not writer.transport.is_closing()
                and writer.can_write_eof()
                and not writer.get_extra_info("sslcontext")
            ):
                writer.write_eof()
            writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), self.close_grace)
            except TimeoutError:
                writer.transport.abort()


def _encode_hint(reply: Err) -> bytes:
    """A final -ERR line written outside the engine's turn-taking (abuse, internal errors)."""
    return ServerConnection.encode_reply(reply)


def _host_of(address: object) -> str | None:
    """The IP address of a (host, port, ...) socket address, else None."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None


def format_address(address: object) -> str:
    """A socket address as ``IP:port`` (``[IPv6]:port``), else ``local`` (a Unix socket)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "local"
