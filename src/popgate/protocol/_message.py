"""Message text as POP3 sends it: CRLF form, sizes, TOP and dot-stuffing (RFC 1939 section 3)."""

from __future__ import annotations

CRLF = b"\r\n"


def to_crlf(data: bytes) -> bytes:
    """Return ``data`` with every line ending as CRLF (bare LF becomes CRLF; bare CR stays)."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_size(data: bytes) -> int:
    """Octets of ``data`` in CRLF form: the size that STAT, LIST and RETR must agree on."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def top_of_message(crlf_message: bytes, body_lines: int) -> bytes:
    """The header, the blank line and the first ``body_lines`` body lines (RFC 1939 TOP)."""
    if body_lines < 0:
        raise ValueError("body_lines must not be negative")
    header_end = crlf_message.find(b"\r\n\r\n")
    if header_end < 0:
        return crlf_message
    position = header_end + 4
    for _ in range(body_lines):
        next_end = crlf_message.find(CRLF, position)
        if next_end < 0:
            return crlf_message
        position = next_end + 2
    return crlf_message[:position]


def dot_stuff(crlf_message: bytes) -> bytes:
    """Byte-stuff a CRLF-form message and append the terminator (RFC 1939 section 3)."""
    stuffed = crlf_message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if stuffed and not stuffed.endswith(CRLF):
        stuffed += CRLF
    return stuffed + b".\r\n"


def dot_unstuff(stuffed_body: bytes) -> bytes:
    """Undo :func:`dot_stuff` on a body whose terminating ``.CRLF`` was already removed."""
    body = stuffed_body.replace(b"\r\n..", b"\r\n.")
    if body.startswith(b".."):
        body = body[1:]
    return body
