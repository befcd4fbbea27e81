"""Turning events into bytes: replies for the server role, commands for the client role."""

from __future__ import annotations

import base64

from ._events import (
    Auth,
    Capa,
    Challenge,
    Command,
    Dele,
    Err,
    List,
    MessageBody,
    MultiLine,
    Noop,
    Ok,
    Pass,
    Quit,
    Reply,
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
    status_line,
)
from ._message import dot_stuff, to_crlf

__all__ = ["write_command", "write_reply"]

CRLF = b"\r\n"
#: RFC 1939 section 3: a multi-line response ends with a line holding only ".".
TERMINATOR = b".\r\n"


def write_reply(reply: Reply) -> bytes:
    """Serialise a reply exactly as it goes on the wire."""
    match reply:
        case Ok(text=text, code=code):
            return status_line(b"+OK", text, code)
        case Err(text=text, code=code):
            return status_line(b"-ERR", text, code)
        case Challenge(data=data):
            # RFC 5034 section 4: "+" SP base64; an empty challenge is exactly "+ ".
            return b"+ " + base64.b64encode(data) + CRLF
        case MultiLine(status=status, lines=lines):
            if not lines:
                return write_reply(status) + TERMINATOR
            # One join and one encode for the whole listing (UIDL of 100,000 messages).
            body = ("\r\n".join(lines) + "\r\n").encode("utf-8")
            # RFC 1939 section 3: byte-stuff lines that start with the termination octet.
            if body.startswith(b"."):
                body = b"." + body
            if b"\n." in body:
                body = body.replace(b"\r\n.", b"\r\n..")
            return write_reply(status) + body + TERMINATOR
        case MessageBody(status=status, content=content, crlf_form=crlf_form):
            if not crlf_form:
                content = to_crlf(content)
            return dot_stuff(content, prefix=write_reply(status))
    raise TypeError(f"not a reply: {reply!r}")  # pragma: no cover - guarded by callers


def _line(text: str) -> bytes:
    return text.encode("utf-8") + CRLF


def write_command(command: Command) -> bytes:
    """Serialise a command exactly as a client sends it."""
    match command:
        case User(name=name):
            return _line(f"USER {name}")
        case Pass(password=password):
            return _line(f"PASS {password}")
        case Auth(mechanism=mechanism, initial_response=None):
            return _line(f"AUTH {mechanism}")
        case Auth(mechanism=mechanism, initial_response=b""):
            # RFC 5034 section 4: "=" is an empty initial response.
            return _line(f"AUTH {mechanism} =")
        case Auth(mechanism=mechanism, initial_response=bytes() as initial):
            return _line(f"AUTH {mechanism} {base64.b64encode(initial).decode('ascii')}")
        case SaslResponse(data=data):
            return base64.b64encode(data) + CRLF
        case SaslCancel():
            return b"*\r\n"
        case Capa():
            return b"CAPA\r\n"
        case Stls():
            return b"STLS\r\n"
        case Stat():
            return b"STAT\r\n"
        case List(msg=None):
            return b"LIST\r\n"
        case List(msg=int() as msg):
            return _line(f"LIST {msg}")
        case Retr(msg=msg):
            return _line(f"RETR {msg}")
        case Top(msg=msg, lines=lines):
            return _line(f"TOP {msg} {lines}")
        case Dele(msg=msg):
            return _line(f"DELE {msg}")
        case Noop():
            return b"NOOP\r\n"
        case Rset():
            return b"RSET\r\n"
        case Uidl(msg=None):
            return b"UIDL\r\n"
        case Uidl(msg=int() as msg):
            return _line(f"UIDL {msg}")
        case Quit():
            return b"QUIT\r\n"
        case Utf8():
            return b"UTF8\r\n"
        case Xclient(attributes=attributes):
            pairs = " ".join(f"{name}={value}" for name, value in attributes.items())
            return _line(f"XCLIENT {pairs}")
    raise TypeError(f"not a command: {command!r}")  # pragma: no cover - guarded by callers
