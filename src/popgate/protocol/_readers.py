"""Turning one received line into a command (server role).

The readers never raise: a line is either a command or a ``BadCommand`` carrying the
``-ERR`` to send. Keywords are matched case-insensitively (RFC 1939 section 3) and arguments
are separated by exactly one space.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from ._errors import LocalProtocolError
from ._events import (
    MAX_MESSAGE_NUMBER,
    Auth,
    BadCommand,
    Capa,
    Command,
    Dele,
    Err,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    SaslCancel,
    SaslResponse,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    Xclient,
)
from ._state import ACCEPTED, State

__all__ = [
    "BAD_BASE64",
    "BAD_SYNTAX",
    "EMPTY_LINE",
    "INVALID_CHARACTERS",
    "LINE_TOO_LONG",
    "UNKNOWN_COMMAND",
    "WRONG_STATE",
    "decode_base64",
    "known_verb",
    "parse_command",
    "parse_sasl_line",
]

# Reply texts. The wrong-state text is Exchange's (MS-STANXPOP3 field transcripts).
WRONG_STATE: Final = Err(text="Command is not valid in this state.")
UNKNOWN_COMMAND: Final = Err(text="Unknown command.")
BAD_SYNTAX: Final = Err(text="Invalid arguments.")
EMPTY_LINE: Final = Err(text="Empty command.")
INVALID_CHARACTERS: Final = Err(text="Invalid characters in command.")
LINE_TOO_LONG: Final = Err(text="Command line too long.")
BAD_BASE64: Final = Err(text="Invalid base64 data.")

#: RFC 4648 section 4 base64 with mandatory padding; "=" only at the end (RFC 5034 section 4).
_BASE64_RE: Final = re.compile(
    rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", re.ASCII
)
_NUMBER_RE: Final = re.compile(r"[0-9]{1,20}", re.ASCII)


class _ArgumentError(Exception):
    """Internal: the arguments do not parse; becomes ``BadCommand(BAD_SYNTAX)``."""


class _Base64Error(Exception):
    """Internal: an AUTH initial response is not valid base64."""


def decode_base64(data: bytes) -> bytes | None:
    """Strictly decode base64, or return ``None``: no stray characters, no misplaced ``=``."""
    if not _BASE64_RE.fullmatch(data):
        return None
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:  # pragma: no cover - the regex already excludes these inputs
        return None


def _number(text: str) -> int:
    if not _NUMBER_RE.fullmatch(text):
        raise _ArgumentError
    value = int(text)
    if not 1 <= value <= MAX_MESSAGE_NUMBER:
        raise _ArgumentError
    return value


def _no_args(cls: type[Command]) -> Callable[[list[str], str], Command]:
    def parse(args: list[str], _rest: str) -> Command:
        if args:
            raise _ArgumentError
        return cls()

    return parse


def _optional_number(cls: type[List] | type[Uidl]) -> Callable[[list[str], str], Command]:
    def parse(args: list[str], _rest: str) -> Command:
        if not args:
            return cls()
        if len(args) != 1:
            raise _ArgumentError
        return cls(msg=_number(args[0]))

    return parse


def _one_number(cls: type[Retr] | type[Dele]) -> Callable[[list[str], str], Command]:
    def parse(args: list[str], _rest: str) -> Command:
        if len(args) != 1:
            raise _ArgumentError
        return cls(msg=_number(args[0]))

    return parse


def _top(args: list[str], _rest: str) -> Command:
    if len(args) != 2:
        raise _ArgumentError
    lines_text = args[1]
    if not _NUMBER_RE.fullmatch(lines_text) or int(lines_text) > MAX_MESSAGE_NUMBER:
        raise _ArgumentError
    return Top(msg=_number(args[0]), lines=int(lines_text))


def _user(_args: list[str], rest: str) -> Command:
    # The rest of the line is the name, so that directory names with spaces still work.
    if not rest:
        raise _ArgumentError
    return User(name=rest)


def _pass(_args: list[str], rest: str) -> Command:
    # RFC 1939 section 7: the password may contain spaces; they belong to it.
    if not rest:
        raise _ArgumentError
    return Pass(password=rest)


def _auth(args: list[str], _rest: str) -> Command:
    # RFC 5034 section 4: AUTH mechanism [initial-response]; bare AUTH is non-standard.
    if len(args) not in (1, 2):
        raise _ArgumentError
    if len(args) == 1:
        return Auth(mechanism=args[0])
    if args[1] == "=":
        return Auth(mechanism=args[0], initial_response=b"")
    decoded = decode_base64(args[1].encode("ascii", "replace"))
    if decoded is None:
        raise _Base64Error
    return Auth(mechanism=args[0], initial_response=decoded)


def _xclient(args: list[str], _rest: str) -> Command:
    if not args:
        raise _ArgumentError
    attributes: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or name.upper() in attributes:
            raise _ArgumentError
        attributes[name.upper()] = value
    return Xclient(attributes=attributes)


_PARSERS: Final[Mapping[str, tuple[type[Command], Callable[[list[str], str], Command]]]] = (
    MappingProxyType(
        {
            "USER": (User, _user),
            "PASS": (Pass, _pass),
            "AUTH": (Auth, _auth),
            "CAPA": (Capa, _no_args(Capa)),
            "STLS": (Stls, _no_args(Stls)),
            "STAT": (Stat, _no_args(Stat)),
            "LIST": (List, _optional_number(List)),
            "RETR": (Retr, _one_number(Retr)),
            "TOP": (Top, _top),
            "DELE": (Dele, _one_number(Dele)),
            "NOOP": (Noop, _no_args(Noop)),
            "RSET": (Rset, _no_args(Rset)),
            "UIDL": (Uidl, _optional_number(Uidl)),
            "QUIT": (Quit, _no_args(Quit)),
            "UTF8": (Utf8, _no_args(Utf8)),
            "XCLIENT": (Xclient, _xclient),
        }
    )
)


def _decode_line(line: bytes) -> str | BadCommand:
    if b"\0" in line or b"\r" in line:
        return BadCommand(reply=INVALID_CHARACTERS)
    try:
        # RFC 6856: UTF-8 user names and passwords; anything else is refused consistently.
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return BadCommand(reply=INVALID_CHARACTERS)


def known_verb(line: bytes) -> str | None:
    """The upper-case verb a command line starts with when it is a POP3 verb, else None.

    For logs: an unknown first word may be anything the peer typed (a password sent by
    mistake), so only the verbs of the parser table are ever reported.
    """
    verb = line.partition(b" ")[0].upper()
    if not verb.isascii() or not verb.isalnum():
        return None
    text = verb.decode("ascii")
    return text if text in _PARSERS else None


def parse_command(line: bytes, state: State) -> Command | BadCommand:
    """Parse one command line (without its line ending) as received in ``state``.

    Order of checks: characters, verb, state, arguments. A known verb in the wrong state is
    reported as such even when its arguments are also bad, which is the more useful message.
    """
    text = _decode_line(line)
    if isinstance(text, BadCommand):
        return text
    if not text:
        return BadCommand(reply=EMPTY_LINE)
    verb, separator, rest = text.partition(" ")
    entry = _PARSERS.get(verb.upper())
    if entry is None:
        # APOP lands here too: popgate does not offer it (see docs/conformance.md).
        return BadCommand(reply=UNKNOWN_COMMAND)
    command_type, parser = entry
    if (state, command_type) not in ACCEPTED:
        return BadCommand(reply=WRONG_STATE)
    # "NOOP " has an empty argument: a separator promises one (RFC 1939 section 3).
    args = rest.split(" ") if separator else []
    if "" in args and command_type not in (User, Pass):
        return BadCommand(reply=BAD_SYNTAX)
    try:
        return parser(args, rest)
    except _Base64Error:
        return BadCommand(reply=BAD_BASE64)
    except (_ArgumentError, LocalProtocolError):
        # LocalProtocolError: the event's own validation refused a value (for example a
        # SASL mechanism name with a character outside RFC 4422's alphabet).
        return BadCommand(reply=BAD_SYNTAX)


def parse_sasl_line(line: bytes) -> SaslResponse | SaslCancel | BadCommand:
    """Parse a line received during a SASL exchange (RFC 5034 section 4)."""
    if line == b"*":
        return SaslCancel()
    decoded = decode_base64(line)
    if decoded is None:
        return BadCommand(reply=BAD_BASE64)
    return SaslResponse(data=decoded)
