"""Events: the commands a server reads, the replies it sends, and the signals in between.

Every event is a frozen, slotted dataclass that validates itself in ``__post_init__``, so an
invalid event cannot exist and serialising one cannot fail. Commands are keyword-only; replies
also take positional arguments (``Err("No such message.", ResponseCode.SYS_TEMP)``) because
drivers build many of them. Don't subclass them: the connections dispatch on the exact type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final

from ._errors import LocalProtocolError

__all__ = [
    "COMMAND_TYPES",
    "MAX_MESSAGE_NUMBER",
    "MAX_REPLY_LINE",
    "Auth",
    "BadCommand",
    "Capa",
    "Challenge",
    "Command",
    "ConnectionClosed",
    "Dele",
    "Err",
    "Event",
    "List",
    "MessageBody",
    "MultiLine",
    "Noop",
    "Ok",
    "Pass",
    "Quit",
    "Reply",
    "ResponseCode",
    "Retr",
    "Rset",
    "SaslCancel",
    "SaslResponse",
    "Signal",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "User",
    "Utf8",
    "Xclient",
]

#: RFC 2449 section 4: a response's first line is at most 512 octets including the CRLF.
MAX_REPLY_LINE: Final = 512
#: Message numbers are decimal and at least 1 (RFC 1939 section 5). The engine does not know
#: the maildrop size; it only refuses numbers no maildrop could have (beyond a signed 32-bit
#: int), so that ``int()`` of a 250-digit argument never reaches the store.
MAX_MESSAGE_NUMBER: Final = 2**31 - 1
#: RFC 4422 section 3.1: sasl-mech = 1*20(UPPER-ALPHA / DIGIT / "-" / "_").
_SASL_MECH_RE: Final = re.compile(r"[A-Z0-9_-]{1,20}", re.ASCII)
#: Postfix-style XCLIENT: NAME=value, value as xtext (printable ASCII, no space).
_XCLIENT_NAME_RE: Final = re.compile(r"[A-Z0-9_-]{1,32}", re.ASCII)
_XCLIENT_VALUE_RE: Final = re.compile(r"[\x21-\x7e]{1,255}", re.ASCII)
_FORBIDDEN_CHARS: Final = frozenset("\r\n\0")


class Signal(Enum):
    """What ``next_event()`` returns when it has no event."""

    #: Feed more bytes with ``receive_data()``.
    NEED_DATA = "NEED_DATA"
    #: Send the pending reply (or finish STLS) first; don't read more yet.
    PAUSED = "PAUSED"


class ResponseCode(Enum):
    """Extended response codes (RFC 2449 section 8, RFC 3206, RFC 6856 section 5)."""

    #: RFC 2449 section 8.1.1: the maildrop is locked by another session.
    IN_USE = "IN-USE"
    #: RFC 2449 section 8.1.2: the user logged in too recently.
    LOGIN_DELAY = "LOGIN-DELAY"
    #: RFC 3206 section 4: a transient system error.
    SYS_TEMP = "SYS/TEMP"
    #: RFC 3206 section 4: a permanent system error.
    SYS_PERM = "SYS/PERM"
    #: RFC 3206 section 5: the credentials are the problem.
    AUTH = "AUTH"
    #: RFC 6856 section 5: the message needs UTF-8 mode.
    UTF8 = "UTF8"


class Event:
    """Base of every event; for ``isinstance`` and annotations only."""

    __slots__ = ()


class Command(Event):
    """Base of the commands a client sends and a server reads."""

    __slots__ = ()


class Reply(Event):
    """Base of the replies a server sends and a client reads."""

    __slots__ = ()


def _check_str(value: object, what: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be str")
    if not allow_empty and not value:
        raise LocalProtocolError(f"{what} must not be empty")
    if not _FORBIDDEN_CHARS.isdisjoint(value):
        raise LocalProtocolError(f"{what} must not contain CR, LF or NUL")
    return value


def _check_bytes(value: object, what: str) -> None:
    if not isinstance(value, bytes):
        raise LocalProtocolError(f"{what} must be bytes")


def _check_number(value: object, what: str, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"{what} must be int")
    if not minimum <= value <= MAX_MESSAGE_NUMBER:
        raise LocalProtocolError(f"{what} must be in {minimum}..{MAX_MESSAGE_NUMBER}")


def status_line(indicator: bytes, text: str, code: ResponseCode | None) -> bytes:
    """``+OK[ [CODE]][ text]CRLF`` (RFC 1939 section 3, RFC 2449 section 8)."""
    line = indicator
    if code is not None:
        line += b" [" + code.value.encode("ascii") + b"]"
    if text:
        line += b" " + text.encode("utf-8")
    return line + b"\r\n"


def _check_status(indicator: bytes, text: object, code: object) -> None:
    text = _check_str(text, "text")
    if text.startswith("["):
        # RFC 2449 section 8: with RESP-CODES a leading "[" is a response code.
        raise LocalProtocolError("text must not start with '[' (use code=)")
    if code is not None and not isinstance(code, ResponseCode):
        raise LocalProtocolError("code must be a ResponseCode or None")
    if len(status_line(indicator, text, code)) > MAX_REPLY_LINE:
        raise LocalProtocolError(f"status line longer than {MAX_REPLY_LINE} octets")


# --- commands (RFC 1939 sections 5-7, RFC 2449, RFC 2595, RFC 5034, RFC 6856) ---------------


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Command):
    """``USER name``: everything after ``USER`` and one space."""

    name: str

    def __post_init__(self) -> None:
        _check_str(self.name, "name", allow_empty=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pass(Command):
    """``PASS password``: everything after ``PASS`` and one space, spaces included."""

    password: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_str(self.password, "password", allow_empty=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth(Command):
    """``AUTH mechanism [initial-response]`` (RFC 5034).

    ``mechanism`` is upper-cased. ``initial_response`` is already base64-decoded: ``None``
    when the client sent none, ``b""`` for ``=``.
    """

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_str(self.mechanism, "mechanism")
        object.__setattr__(self, "mechanism", self.mechanism.upper())
        if not _SASL_MECH_RE.fullmatch(self.mechanism):
            raise LocalProtocolError("mechanism is not a valid SASL mechanism name")
        if self.initial_response is not None:
            _check_bytes(self.initial_response, "initial_response")


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslResponse(Command):
    """A base64 continuation line of a SASL exchange, already decoded."""

    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_bytes(self.data, "data")


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslCancel(Command):
    """A ``*`` line: the client cancels the SASL exchange (RFC 5034 section 4)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Capa(Command):
    """``CAPA`` (RFC 2449 section 5)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Stls(Command):
    """``STLS`` (RFC 2595 section 4)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat(Command):
    """``STAT``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class List(Command):
    """``LIST [msg]``; ``msg=None`` asks for the multi-line listing."""

    msg: int | None = None

    def __post_init__(self) -> None:
        if self.msg is not None:
            _check_number(self.msg, "msg")


@dataclass(frozen=True, slots=True, kw_only=True)
class Retr(Command):
    """``RETR msg``."""

    msg: int

    def __post_init__(self) -> None:
        _check_number(self.msg, "msg")


@dataclass(frozen=True, slots=True, kw_only=True)
class Top(Command):
    """``TOP msg lines``."""

    msg: int
    lines: int

    def __post_init__(self) -> None:
        _check_number(self.msg, "msg")
        _check_number(self.lines, "lines", minimum=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dele(Command):
    """``DELE msg``."""

    msg: int

    def __post_init__(self) -> None:
        _check_number(self.msg, "msg")


@dataclass(frozen=True, slots=True, kw_only=True)
class Noop(Command):
    """``NOOP``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rset(Command):
    """``RSET``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Uidl(Command):
    """``UIDL [msg]``; ``msg=None`` asks for the multi-line listing."""

    msg: int | None = None

    def __post_init__(self) -> None:
        if self.msg is not None:
            _check_number(self.msg, "msg")


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Command):
    """``QUIT``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Utf8(Command):
    """``UTF8`` (RFC 6856 section 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Xclient(Command):
    """``XCLIENT NAME=value ...``: popgate-internal, sent by a trusted front end before login.

    ``attributes`` is a read-only mapping with upper-cased names. A ``dict`` cannot live in a
    hashable frozen event, so the mapping is copied into a ``MappingProxyType`` and left out of
    the hash (it still takes part in ``==``). Whether the peer may send XCLIENT at all is the
    driver's decision; the engine only parses it.
    """

    attributes: Mapping[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attributes, Mapping) or not self.attributes:
            raise LocalProtocolError("attributes must be a non-empty mapping")
        normalised: dict[str, str] = {}
        for name, value in self.attributes.items():
            _check_str(name, "attribute name")
            _check_str(value, "attribute value")
            upper = name.upper()
            if not _XCLIENT_NAME_RE.fullmatch(upper) or upper in normalised:
                raise LocalProtocolError("invalid or duplicate XCLIENT attribute name")
            if not _XCLIENT_VALUE_RE.fullmatch(value):
                raise LocalProtocolError("XCLIENT value must be 1-255 printable ASCII octets")
            normalised[upper] = value
        object.__setattr__(self, "attributes", MappingProxyType(normalised))


#: Every command type, in RFC order; the state table and the tests iterate over it.
COMMAND_TYPES: Final[tuple[type[Command], ...]] = (
    User,
    Pass,
    Auth,
    SaslResponse,
    SaslCancel,
    Capa,
    Stls,
    Stat,
    List,
    Retr,
    Top,
    Dele,
    Noop,
    Rset,
    Uidl,
    Quit,
    Utf8,
    Xclient,
)


# --- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok(Reply):
    """``+OK[ [CODE]][ text]``; the whole line is at most 512 octets (RFC 2449 section 4)."""

    text: str = ""
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        _check_status(b"+OK", self.text, self.code)


@dataclass(frozen=True, slots=True)
class Err(Reply):
    """``-ERR[ [CODE]][ text]``; the whole line is at most 512 octets (RFC 2449 section 4)."""

    text: str = ""
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        _check_status(b"-ERR", self.text, self.code)


@dataclass(frozen=True, slots=True)
class Challenge(Reply):
    """A SASL challenge, sent as ``+ <base64>`` (an empty one as exactly ``+ ``)."""

    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_bytes(self.data, "data")


@dataclass(frozen=True, slots=True)
class MultiLine(Reply):
    """``+OK`` and then text lines (CAPA, LIST, UIDL); the engine dot-stuffs and terminates.

    Each line is at most 510 octets so that it fits 512 with its CRLF (RFC 2449 section 4).
    """

    status: Ok
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.status, Ok):
            raise LocalProtocolError("status must be Ok")
        given: object = self.lines
        if not isinstance(given, tuple | list):
            raise LocalProtocolError("lines must be a tuple of str")
        lines = tuple(given)
        for line in lines:
            _check_str(line, "line")
            if len(line.encode("utf-8")) + 2 > MAX_REPLY_LINE:
                raise LocalProtocolError(f"line longer than {MAX_REPLY_LINE} octets")
        object.__setattr__(self, "lines", lines)


@dataclass(frozen=True, slots=True)
class MessageBody(Reply):
    """``+OK`` and then a message (RETR, TOP).

    The engine sends ``content`` in CRLF form (bare LF becomes CRLF, a final CRLF is added).
    A caller whose content is CRLF form already (the store guarantees it) says so with
    ``crlf_form=True`` and saves the engine a pass over every megabyte.
    """

    status: Ok
    content: bytes = field(repr=False)
    crlf_form: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.status, Ok):
            raise LocalProtocolError("status must be Ok")
        _check_bytes(self.content, "content")


# --- connection events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BadCommand(Event):
    """A recoverable peer mistake; the driver must send ``reply`` before anything else."""

    reply: Err

    def __post_init__(self) -> None:
        if not isinstance(self.reply, Err):
            raise LocalProtocolError("reply must be Err")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    """The peer closed its side and every buffered command was consumed."""
