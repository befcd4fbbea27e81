"""Message text as POP3 sends it: CRLF form, sizes, TOP and dot-stuffing (RFC 1939 section 3)."""

from __future__ import annotations

CRLF = b"\r\n"


def to_crlf(data: bytes) -> bytes:
    """Return ``data`` in CRLF form: every line ends with CRLF, the last one included.

    Bare LF becomes CRLF and bare CR stays. A message without a final line ending gets one,
    because that is what RETR must send before the terminating ``.`` line, and the size in
    LIST has to count exactly the octets RETR sends.
    """
    # Fast paths for the two common cases (every megabyte of RETR goes through here): a file
    # with no CR at all (Maildir's usual LF form) needs one pass; one whose LFs all follow a
    # CR is CRLF already, which counting finds without copying.
    if b"\r" not in data:
        data = data.replace(b"\n", b"\r\n")
    elif data.count(b"\n") != data.count(b"\r\n"):
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\n"):
        data += CRLF
    return data


def crlf_size(data: bytes) -> int:
    """Octets of ``to_crlf(data)``, computed without building it: what STAT and LIST report."""
    size = len(data) + data.count(b"\n") - data.count(b"\r\n")
    if data and not data.endswith(b"\n"):
        size += 2
    return size


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


def dot_stuff(crlf_message: bytes, *, prefix: bytes = b"") -> bytes:
    """Byte-stuff a CRLF-form message and append the terminator (RFC 1939 section 3).

    ``prefix`` (a status line) is put in front in the same copy: a message can be 20 MB.
    """
    # Stuffing after every LF, not only after CRLF, is identical for CRLF input and means a
    # stray bare LF can never let a line that starts with "." end the response early.
    stuffed = crlf_message.replace(b"\n.", b"\n..")
    parts = [prefix, b"."] if stuffed.startswith(b".") else [prefix]
    parts.append(stuffed)
    if stuffed and not stuffed.endswith(CRLF):
        parts.append(CRLF)
    parts.append(b".\r\n")
    return b"".join(parts)


def dot_unstuff(stuffed_body: bytes) -> bytes:
    """Undo :func:`dot_stuff` on a body whose terminating ``.CRLF`` was already removed."""
    body = stuffed_body.replace(b"\r\n..", b"\r\n.")
    if body.startswith(b".."):
        body = body[1:]
    return body
