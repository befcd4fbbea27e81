"""The CAPA listing (RFC 2449 section 6, RFC 5034, RFC 2595, RFC 6856)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from ._events import MAX_REPLY_LINE

__all__ = ["capabilities"]

#: RFC 4422 section 3.1 mechanism names.
_MECH_RE: Final = re.compile(r"[A-Z0-9_-]{1,20}", re.ASCII)
#: RFC 2449 section 6.7: EXPIRE NEVER | EXPIRE <days> [USER].
_EXPIRE_RE: Final = re.compile(r"(?:NEVER|[0-9]{1,9})(?: USER)?", re.ASCII)


def capabilities(
    *,
    stls: bool,
    user: bool,
    sasl: Sequence[str],
    resp_codes: bool = True,
    pipelining: bool = True,
    expire: str | None = "NEVER",
    login_delay: int | None = None,
    utf8: bool = True,
    implementation: str | None = "popgate",
) -> tuple[str, ...]:
    """The CAPA lines to send now; the caller decides what is allowed in the current state.

    Pass ``stls=True`` only in AUTHORIZATION on a plaintext connection (RFC 2595 section 4),
    and ``user``/``sasl`` as currently permitted (RFC 2595 section 2.3, RFC 5034 section 6).
    """
    lines = ["TOP", "UIDL"]  # RFC 2449 sections 6.1, 6.8
    if user:
        lines.append("USER")  # RFC 2449 section 6.2
    mechanisms = [mech.upper() for mech in sasl]
    for mech in mechanisms:
        if not _MECH_RE.fullmatch(mech):
            raise ValueError(f"invalid SASL mechanism name: {mech!r}")
    if mechanisms:
        lines.append("SASL " + " ".join(mechanisms))  # RFC 2449 section 6.3, RFC 5034
    if resp_codes:
        lines.append("RESP-CODES")  # RFC 2449 section 6.4
        lines.append("AUTH-RESP-CODE")  # RFC 3206
    if pipelining:
        lines.append("PIPELINING")  # RFC 2449 section 6.6
    if expire is not None:
        if not _EXPIRE_RE.fullmatch(expire):
            raise ValueError("expire must be NEVER or a number of days, optionally + ' USER'")
        lines.append(f"EXPIRE {expire}")  # RFC 2449 section 6.7
    if login_delay is not None:
        if login_delay < 0:
            raise ValueError("login_delay must not be negative")
        lines.append(f"LOGIN-DELAY {login_delay}")  # RFC 2449 section 6.5
    if utf8:
        # RFC 6856 section 2: "USER" says UTF-8 is accepted in USER/PASS too.
        lines.append("UTF8 USER" if user else "UTF8")
    if implementation is not None:
        if not implementation or any(ch in implementation for ch in "\r\n\0"):
            raise ValueError("implementation must be a non-empty single line")
        lines.append(f"IMPLEMENTATION {implementation}")  # RFC 2449 section 6.9
    if stls:
        lines.append("STLS")  # RFC 2595 section 4
    for line in lines:
        if len(line.encode("utf-8")) + 2 > MAX_REPLY_LINE:
            raise ValueError(f"capability line longer than {MAX_REPLY_LINE} octets")
    return tuple(lines)
