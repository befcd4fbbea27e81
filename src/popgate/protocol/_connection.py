"""``ServerConnection``: the sans-IO POP3 server engine.

The driver feeds received bytes to ``receive_data()``, pulls commands from ``next_event()``
and turns replies into bytes with ``send()``. The engine never does I/O, never blocks and
keeps at most one command in flight, so pipelined commands are answered strictly in order
(RFC 2449 section 6.6) without any queueing in the driver.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    BadCommand,
    Command,
    ConnectionClosed,
    Err,
    Ok,
    Reply,
    Signal,
    Stls,
    Utf8,
)
from ._readers import LINE_TOO_LONG, known_verb, parse_command, parse_sasl_line
from ._state import ACCEPTED, State, after_reply, allowed_replies
from ._writers import write_reply

__all__ = [
    "DEFAULT_MAX_BAD_COMMANDS",
    "DEFAULT_MAX_COMMAND_SIZE",
    "DEFAULT_MAX_SASL_LINE",
    "ServerConnection",
]

#: RFC 2449 section 4: with CAPA, command lines up to 255 octets including CRLF are accepted.
DEFAULT_MAX_COMMAND_SIZE: Final = 255
#: Exchange's MaxCommandSize range (Set-PopSettings): popgate passes 40..1024.
MIN_COMMAND_SIZE: Final = 40
#: RFC 5034 section 4: SASL continuation lines are not bound by the 255-octet limit.
DEFAULT_MAX_SASL_LINE: Final = 65536
#: aiosmtpd's BOGUS_LIMIT idea: a budget of invalid commands per session.
DEFAULT_MAX_BAD_COMMANDS: Final = 20

TOO_MANY_BAD_COMMANDS: Final = Err(text="Too many invalid commands.")
SASL_LINE_TOO_LONG: Final = Err(text="Authentication line too long.")

#: A line that exceeded the hard buffer limit; its bytes were dropped on arrival.
_TOO_LONG: Final = None


class ServerConnection:
    """The server side of one POP3 session.

    :param max_command_size: longest command line accepted, CRLF included (RFC 2449: >= 255).
    :param max_sasl_line: longest SASL continuation line, CRLF included.
    :param max_bad_commands: ``BadCommand`` events allowed before ``RemoteProtocolError``.
    :param tls_active: the connection is already encrypted (implicit TLS, RFC 8314).
    """

    def __init__(
        self,
        *,
        max_command_size: int = DEFAULT_MAX_COMMAND_SIZE,
        max_sasl_line: int = DEFAULT_MAX_SASL_LINE,
        max_bad_commands: int = DEFAULT_MAX_BAD_COMMANDS,
        tls_active: bool = False,
    ) -> None:
        if max_command_size < MIN_COMMAND_SIZE:
            raise ValueError(f"max_command_size must be at least {MIN_COMMAND_SIZE}")
        if max_sasl_line < 4:
            raise ValueError("max_sasl_line must be at least 4")
        if max_bad_commands < 0:
            raise ValueError("max_bad_commands must not be negative")
        self._max_command_size = max_command_size
        self._max_sasl_line = max_sasl_line
        self._max_bad_commands = max_bad_commands
        # No line worth keeping is longer than this, whatever the state when it is parsed.
        self._hard_limit = max(max_command_size, max_sasl_line)
        self._state = State.AUTHORIZATION
        self._tls_active = tls_active
        self._utf8 = False
        self._greeted = False
        self._pending: Command | BadCommand | None = None
        self._bad_commands = 0
        # Complete lines (without line ending), or _TOO_LONG for one whose bytes were dropped.
        self._lines: deque[bytes | None] = deque()
        self._partial = bytearray()
        self._discarding = False
        self._eof = False
        self._last_line_size = 0
        self._last_verb: str | None = None

    # --- properties ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The session state (``UPDATE`` while a QUIT from TRANSACTION awaits its reply)."""
        return self._state

    @property
    def tls_active(self) -> bool:
        """True once TLS is in place (implicit TLS, or after ``start_tls_done()``)."""
        return self._tls_active

    @property
    def utf8_enabled(self) -> bool:
        """True once ``UTF8`` was answered with ``+OK`` (RFC 6856 section 2)."""
        return self._utf8

    @property
    def max_command_size(self) -> int:
        """The longest command line accepted now, CRLF included."""
        return self._max_command_size

    @max_command_size.setter
    def max_command_size(self, size: int) -> None:
        # A back end accepts a front end's long internal lines (XCLIENT, AUTH) at first and
        # applies the client's limit once the session is proxied.
        if size < MIN_COMMAND_SIZE:
            raise ValueError(f"max_command_size must be at least {MIN_COMMAND_SIZE}")
        self._max_command_size = size
        self._hard_limit = max(size, self._max_sasl_line)

    @property
    def pending(self) -> Command | BadCommand | None:
        """The command (or ``BadCommand``) awaiting a reply, or ``None``."""
        return self._pending

    @property
    def last_line_size(self) -> int:
        """Octets of the line behind the last event, CRLF counted; 0 for one too long to keep."""
        return self._last_line_size

    @property
    def last_verb(self) -> str | None:
        """The POP3 verb the last command line started with, or None (see ``known_verb``)."""
        return self._last_verb

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Buffered unparsed bytes and whether EOF was seen (for handing the stream on)."""
        data = b"".join(line + b"\r\n" for line in self._lines if line is not None)
        return data + bytes(self._partial), self._eof

    # --- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the peer; ``b""`` means the peer closed its side."""
        if self._eof and data:
            raise LocalProtocolError("received data after EOF")
        if not data:
            self._eof = True
            return
        start = 0
        while (lf := data.find(b"\n", start)) >= 0:
            if self._discarding:
                self._discarding = False
                self._lines.append(_TOO_LONG)
            else:
                self._partial += data[start:lf]
                self._lines.append(self._take_partial())
            start = lf + 1
        if not self._discarding:
            self._partial += data[start:]
            # Bound the buffer: drop an over-long line now rather than when it is parsed.
            if len(self._partial) >= self._hard_limit:
                self._partial.clear()
                self._discarding = True

    def _take_partial(self) -> bytes | None:
        line = bytes(self._partial)
        self._partial.clear()
        if line.endswith(b"\r"):
            line = line[:-1]
        return line if len(line) + 2 <= self._hard_limit else _TOO_LONG

    def next_event(self) -> Command | BadCommand | ConnectionClosed | Signal:
        """The next command, ``BadCommand``, ``ConnectionClosed`` or a ``Signal``.

        Raises only ``RemoteProtocolError``, after which the state is ``ERROR``.
        """
        if self._state is State.ERROR:
            raise RemoteProtocolError("the connection is in ERROR state")
        if self._state is State.CLOSED:
            return ConnectionClosed() if self._eof else Signal.PAUSED
        if not self._greeted or self._pending is not None or self._state is State.TLS_PENDING:
            return Signal.PAUSED
        try:
            event = self._read_event()
        except RemoteProtocolError:
            self._state = State.ERROR
            raise
        if isinstance(event, Signal):
            return event
        if isinstance(event, ConnectionClosed):
            self._state = State.CLOSED
            return event
        if isinstance(event, BadCommand):
            self._bad_commands += 1
            if self._bad_commands > self._max_bad_commands:
                self._state = State.ERROR
                raise RemoteProtocolError(
                    "too many invalid commands", reply_hint=TOO_MANY_BAD_COMMANDS
                )
        elif isinstance(event, Command):
            self._state = ACCEPTED[self._state, type(event)]
        self._pending = event
        return event

    def _read_event(self) -> Command | BadCommand | ConnectionClosed | Signal:
        sasl = self._state is State.SASL
        limit = self._max_sasl_line if sasl else self._max_command_size
        if not self._lines:
            if sasl and self._discarding:
                raise RemoteProtocolError("SASL line too long", reply_hint=SASL_LINE_TOO_LONG)
            if len(self._partial) >= limit:
                if sasl:
                    raise RemoteProtocolError("SASL line too long", reply_hint=SASL_LINE_TOO_LONG)
                self._partial.clear()
                self._discarding = True
            if self._eof:
                # An unterminated last line is never executed.
                return ConnectionClosed()
            return Signal.NEED_DATA
        line = self._lines.popleft()
        self._last_line_size = 0 if line is None else len(line) + 2
        self._last_verb = None if line is None or sasl else known_verb(line)
        if line is None or len(line) + 2 > limit:
            if sasl:
                raise RemoteProtocolError("SASL line too long", reply_hint=SASL_LINE_TOO_LONG)
            return BadCommand(reply=LINE_TOO_LONG)
        if sasl:
            return parse_sasl_line(line)
        return parse_command(line, self._state)

    # --- output -------------------------------------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """Serialise ``reply`` (the greeting first, then one reply per command)."""
        if not isinstance(reply, Reply):
            raise LocalProtocolError(f"not a reply: {reply!r}")
        if self._state is State.ERROR:
            # The only thing left to say is the goodbye, e.g. RemoteProtocolError.reply_hint.
            if not isinstance(reply, Err):
                raise LocalProtocolError("only Err may be sent in ERROR state")
            return write_reply(reply)
        if not self._greeted:
            # RFC 1939 section 4: the greeting is one positive line. An Err greeting (server
            # busy) is allowed too and ends the session.
            if type(reply) not in (Ok, Err):
                raise LocalProtocolError("the greeting must be Ok (or Err to refuse)")
            self._greeted = True
            if isinstance(reply, Err):
                self._state = State.CLOSED
            return write_reply(reply)
        pending = self._pending
        if pending is None:
            raise LocalProtocolError("send() with no command pending")
        if type(reply) not in allowed_replies(pending):
            raise LocalProtocolError(f"{type(reply).__name__} cannot answer {pending!r}")
        if isinstance(pending, Stls) and isinstance(reply, Ok) and self._tls_active:
            raise LocalProtocolError("STLS accepted while TLS is already active")
        if isinstance(pending, Utf8) and isinstance(reply, Ok):
            self._utf8 = True
        self._state = after_reply(self._state, pending, reply)
        self._pending = None
        return write_reply(reply)

    @staticmethod
    def encode_reply(reply: Reply) -> bytes:
        """Serialise ``reply`` outside the turn-taking (a last ``-ERR`` before closing).

        ``send()`` is the normal path; use this only for a goodbye the state machine cannot
        account for, such as an internal error in the driver.
        """
        if not isinstance(reply, Reply):
            raise LocalProtocolError(f"not a reply: {reply!r}")
        return write_reply(reply)

    def start_tls_done(self) -> None:
        """The TLS handshake after STLS finished: drop the plaintext phase.

        Bytes received after the STLS line are discarded, never executed inside TLS
        (CVE-2011-0411 class; RFC 2595 section 4, RFC 3207 section 4.2 by analogy), and the
        session restarts in AUTHORIZATION (a pending USER is forgotten). Call it as soon as
        the handshake completes and before feeding any decrypted bytes; the driver must also
        drop plaintext its own stream buffers may still hold.
        """
        if self._state is not State.TLS_PENDING:
            raise LocalProtocolError("start_tls_done() without an accepted STLS")
        self._lines.clear()
        self._partial.clear()
        self._discarding = False
        self._utf8 = False
        self._tls_active = True
        self._state = State.AUTHORIZATION
