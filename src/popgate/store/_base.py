"""The store boundary: message metadata, errors and the session-shaped protocols.

The POP3 back end talks to mail storage only through :class:`MailStore` and
:class:`MailboxSession` (STYLE.md convention 8). A session is the POP3 maildrop
lock (RFC 1939 section 4): it fixes a snapshot of the messages when it is opened,
and deletions happen only in :meth:`MailboxSession.commit`, the UPDATE state.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "MailStore",
    "MailboxLocked",
    "MailboxNotFound",
    "MailboxSession",
    "MessageGone",
    "MessageInfo",
    "StoreError",
]


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message of a maildrop snapshot.

    :param uid: the unique-id listing value: 1 to 70 octets in 0x21..0x7E, never reused
        within the mailbox and stable across sessions (RFC 1939 section 7, UIDL).
    :param size: octets of the message in CRLF form, without dot-stuffing; exactly
        ``len(await session.read(uid))`` (RFC 1939 section 11).
    """

    uid: str
    size: int


class StoreError(Exception):
    """Base class of every error a mail store raises on purpose."""


# The names below are the store API the back end is written against, hence no Error suffix.


class MailboxLocked(StoreError):  # noqa: N818
    """Another session holds the maildrop lock; POP3 answers ``-ERR [IN-USE]``."""


class MailboxNotFound(StoreError):  # noqa: N818
    """The mailbox was never created, or has been deleted."""


class MessageGone(StoreError):  # noqa: N818
    """The message vanished after the snapshot was taken (another program removed it)."""


class MailboxSession(Protocol):
    """An open maildrop: holds the exclusive lock until :meth:`commit` or :meth:`close`."""

    @property
    def messages(self) -> Sequence[MessageInfo]:
        """The snapshot fixed at open, in delivery order (oldest first)."""
        ...

    async def read(self, uid: str) -> bytes:
        """The whole message in CRLF form.

        :raises MessageGone: the message file no longer exists.
        """
        ...

    async def read_top(self, uid: str, body_lines: int) -> bytes:
        """The header, the blank line and ``body_lines`` body lines, in CRLF form (TOP).

        :raises MessageGone: the message file no longer exists.
        """
        ...

    async def commit(self, deleted: Collection[str]) -> list[str]:
        """Remove ``deleted`` (POP3 UPDATE), release the lock, return the UIDs not removed.

        A message that is already gone counts as removed.
        """
        ...

    async def close(self) -> None:
        """Release the lock and delete nothing; idempotent, and harmless after commit."""
        ...


class MailStore(Protocol):
    """A collection of mailboxes keyed by the mailbox GUID (never by a user-supplied name)."""

    async def create_mailbox(self, guid: uuid.UUID) -> None:
        """Create an empty mailbox; does nothing if it already exists."""
        ...

    async def delete_mailbox(self, guid: uuid.UUID) -> None:
        """Remove the mailbox and all its messages; does nothing if it does not exist."""
        ...

    async def deliver(self, guid: uuid.UUID, content: bytes) -> str:
        """Atomically add a message (LF or CRLF line endings) and return its UID.

        :raises MailboxNotFound: the mailbox does not exist.
        """
        ...

    async def stats(self, guid: uuid.UUID) -> tuple[int, int]:
        """``(message count, total CRLF octets)`` without taking the maildrop lock.

        :raises MailboxNotFound: the mailbox does not exist.
        """
        ...

    def delivery_guard(self, guid: uuid.UUID) -> AbstractAsyncContextManager[None]:
        """Held by a delivery from the check of the holding server to the write; a mailbox
        move waits for it and holds it back (see ``_move``).

        :raises StoreError: the mailbox stayed frozen by a move for too long.
        """
        ...

    async def open(self, guid: uuid.UUID) -> MailboxSession:
        """Take the maildrop lock without waiting and snapshot the messages.

        :raises MailboxLocked: another session holds the lock.
        :raises MailboxNotFound: the mailbox does not exist.
        """
        ...
