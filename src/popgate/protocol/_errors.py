"""The protocol core's exceptions, after h11 and wsproto.

``LocalProtocolError`` means the caller misused the API; ``RemoteProtocolError`` means the
peer misbehaved badly enough that the session cannot continue. Recoverable peer mistakes are
not exceptions at all: they are ``BadCommand`` events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._events import Err

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of every error the protocol core raises on purpose."""


class LocalProtocolError(ProtocolError):
    """Our side broke the protocol: a reply at the wrong time, an invalid event, and so on."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol beyond recovery; the connection is now in ``ERROR``.

    ``reply_hint`` is the ``-ERR`` line a server should send (if it can) before it closes.
    """

    def __init__(self, msg: str, *, reply_hint: Err | None = None) -> None:
        super().__init__(msg)
        self.reply_hint = reply_hint
