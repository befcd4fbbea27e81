"""``ClientConnection``: the client role of the same core, for tests and the front-end proxy.

The client keeps a FIFO of the commands it sent, so pipelined replies (RFC 2449 section 6.6)
are matched to their commands in order and multi-line replies are recognised: ``+OK`` to
CAPA, LIST and UIDL without an argument is followed by lines, to RETR and TOP by a message.
"""

from __future__ import annotations

import re
from collections import deque
from enum import Enum
from typing import Final

from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Auth,
    Capa,
    Challenge,
    Command,
    ConnectionClosed,
    Err,
    List,
    MessageBody,
    MultiLine,
    Ok,
    Reply,
    ResponseCode,
    Retr,
    SaslResponse,
    Signal,
    Stls,
    Top,
    Uidl,
)
from ._message import dot_unstuff
from ._readers import decode_base64
from ._writers import write_command

__all__ = ["DEFAULT_MAX_LINE", "DEFAULT_MAX_MESSAGE_SIZE", "ClientConnection"]

#: Lenient bound on a status or listing line from a server (RFC 2449 allows 512).
DEFAULT_MAX_LINE: Final = 8192
#: Bound on one RETR/TOP body held in memory.
DEFAULT_MAX_MESSAGE_SIZE: Final = 256 * 1024 * 1024
#: Hierarchical codes (RFC 2449 section 8): "SYS/TEMP/DISK" is understood as SYS/TEMP.
_CODE_RE: Final = re.compile(r"\[([^\]]*)\]")
_BODY_END: Final = b"\r\n.\r\n"


class _Expect(Enum):
    GREETING = "GREETING"
    SINGLE = "SINGLE"
    SASL = "SASL"
    LINES = "LINES"
    MESSAGE = "MESSAGE"
    STLS = "STLS"


def _expectation(command: Command) -> _Expect:
    match command:
        case Auth() | SaslResponse():
            return _Expect.SASL
        case Capa() | List(msg=None) | Uidl(msg=None):
            return _Expect.LINES
        case Retr() | Top():
            return _Expect.MESSAGE
        case Stls():
            return _Expect.STLS
    return _Expect.SINGLE


def _response_code(text: str) -> tuple[ResponseCode | None, str]:
    if not text.startswith("["):
        return None, text
    match = _CODE_RE.match(text)
    if match is None:
        raise RemoteProtocolError("unterminated response code")
    rest = text[match.end() :].removeprefix(" ")
    if rest.startswith("["):
        raise RemoteProtocolError("text after a response code starts with '['")
    parts = match.group(1).upper().split("/")
    # Longest known prefix wins; unknown codes are dropped (RFC 2449 section 8: clients
    # ignore codes they do not understand).
    for length in range(len(parts), 0, -1):
        try:
            return ResponseCode("/".join(parts[:length])), rest
        except ValueError:
            continue
    return None, rest


def _text(raw: bytes) -> str:
    if b"\0" in raw or b"\r" in raw:
        raise RemoteProtocolError("control characters in a reply")
    # Servers in the wild send Latin-1 texts; the text is informational, so be lenient.
    return raw.decode("utf-8", "replace")


def parse_status(line: bytes) -> Ok | Err:
    """Parse a ``+OK``/``-ERR`` line (without its line ending)."""
    if line == b"+OK" or line.startswith(b"+OK "):
        indicator: type[Ok] | type[Err] = Ok
        raw = line[4:]
    elif line == b"-ERR" or line.startswith(b"-ERR "):
        indicator = Err
        raw = line[5:]
    else:
        raise RemoteProtocolError("reply is neither +OK nor -ERR")
    code, text = _response_code(_text(raw))
    try:
        return indicator(text=text, code=code)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"invalid status line: {exc}") from None


class ClientConnection:
    """The client side of one POP3 session (sans-IO).

    :param max_line: longest status or listing line accepted from the server.
    :param max_message_size: largest RETR/TOP reply held in memory.
    """

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._max_line = max_line
        self._max_message_size = max_message_size
        self._expected: deque[_Expect] = deque([_Expect.GREETING])
        self._buffer = bytearray()
        self._eof = False
        self._error = False
        self._tls_pending = False
        # A multi-line reply in progress: its status line and, for listings, the lines so far.
        self._status: Ok | None = None
        self._lines: list[str] = []
        self._scan_from = 0

    @property
    def awaiting(self) -> int:
        """How many replies (the greeting included) are still expected."""
        return len(self._expected)

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Buffered unparsed bytes and whether EOF was seen."""
        return bytes(self._buffer), self._eof

    def send(self, command: Command) -> bytes:
        """Serialise ``command`` and remember that a reply to it is due."""
        if not isinstance(command, Command):
            raise LocalProtocolError(f"not a command: {command!r}")
        if self._error:
            raise LocalProtocolError("the connection is in ERROR state")
        data = write_command(command)
        self._expected.append(_expectation(command))
        return data

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; ``b""`` means the server closed its side."""
        if self._eof and data:
            raise LocalProtocolError("received data after EOF")
        if not data:
            self._eof = True
        self._buffer += data

    def start_tls_done(self) -> None:
        """The handshake after STLS finished: drop anything the server sent in plaintext."""
        if not self._tls_pending:
            raise LocalProtocolError("start_tls_done() without an accepted STLS")
        self._tls_pending = False
        self._buffer.clear()
        self._scan_from = 0

    def next_event(self) -> Reply | ConnectionClosed | Signal:
        """The next reply, ``ConnectionClosed`` or a ``Signal``; raises only RemoteProtocolError."""
        if self._error:
            raise RemoteProtocolError("the connection is in ERROR state")
        if self._tls_pending:
            return Signal.PAUSED
        try:
            event = self._read()
        except RemoteProtocolError:
            self._error = True
            raise
        if event is Signal.NEED_DATA and self._eof:
            if self._buffer or self._status is not None:
                self._error = True
                raise RemoteProtocolError("connection closed in the middle of a reply")
            return ConnectionClosed()
        return event

    def _take_line(self) -> bytes | None:
        lf = self._buffer.find(b"\n")
        if lf < 0:
            if len(self._buffer) > self._max_line:
                raise RemoteProtocolError("line from server too long")
            return None
        if lf > self._max_line:
            raise RemoteProtocolError("line from server too long")
        line = bytes(self._buffer[:lf]).removesuffix(b"\r")
        del self._buffer[: lf + 1]
        return line

    def _read(self) -> Reply | Signal:
        if self._status is not None:
            return self._read_multiline(self._status)
        line = self._take_line()
        if line is None:
            return Signal.NEED_DATA
        expect = self._expected[0] if self._expected else None
        if expect is _Expect.SASL and (line == b"+" or line.startswith(b"+ ")):
            # RFC 5034 section 4: "+ " base64; a bare "+" is tolerated as an empty challenge.
            data = decode_base64(line[2:])
            if data is None:
                raise RemoteProtocolError("challenge is not valid base64")
            self._expected.popleft()
            return Challenge(data=data)
        status = parse_status(line)
        if expect is None:
            # An unsolicited -ERR (timeout, shutdown, abuse) before the server closes.
            if isinstance(status, Err):
                return status
            raise RemoteProtocolError("reply without a command")
        self._expected.popleft()
        if isinstance(status, Ok):
            if expect in (_Expect.LINES, _Expect.MESSAGE):
                self._status = status
                self._lines = []
                self._scan_from = 0
                self._expected.appendleft(expect)
                return self._read_multiline(status)
            if expect is _Expect.STLS:
                # RFC 2595 section 4: the handshake starts right after this line.
                self._tls_pending = True
        return status

    def _read_multiline(self, status: Ok) -> Reply | Signal:
        if self._expected[0] is _Expect.MESSAGE:
            return self._read_message(status)
        while (line := self._take_line()) is not None:
            if line == b".":
                self._status = None
                self._expected.popleft()
                lines, self._lines = tuple(self._lines), []
                try:
                    return MultiLine(status=status, lines=lines)
                except LocalProtocolError as exc:  # pragma: no cover - lines checked below
                    raise RemoteProtocolError(str(exc)) from None
            text = _text(line.removeprefix(b"."))
            if len(text.encode("utf-8")) + 2 > 512:
                raise RemoteProtocolError("listing line longer than 512 octets")
            self._lines.append(text)
        return Signal.NEED_DATA

    def _read_message(self, status: Ok) -> Reply | Signal:
        if self._buffer.startswith(b".\r\n"):
            end, content = 3, b""
        else:
            index = self._buffer.find(_BODY_END, max(0, self._scan_from - 4))
            if index < 0:
                self._scan_from = len(self._buffer)
                if len(self._buffer) > self._max_message_size:
                    raise RemoteProtocolError("message larger than max_message_size")
                return Signal.NEED_DATA
            end = index + len(_BODY_END)
            content = dot_unstuff(bytes(self._buffer[: index + 2]))
        del self._buffer[:end]
        self._status = None
        self._scan_from = 0
        self._expected.popleft()
        return MessageBody(status=status, content=content)
