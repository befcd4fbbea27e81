"""Messages to import into a mailbox: .eml files, mbox files and Maildir folders.

``popgate mailbox import`` and the control API's upload (New-MailboxImportRequest) both read
their sources here and deliver with :func:`import_messages`, so they accept the same files
and store them the same way.
"""

from __future__ import annotations

import asyncio
import mailbox as stdlib_mailbox
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path

from ._base import MailStore, StoreError

__all__ = [
    "ImportSourceError",
    "eml_messages",
    "import_messages",
    "maildir_count",
    "maildir_messages",
    "mbox_messages",
]

#: The separator line that starts every message of an mbox file (and so the file).
MBOX_FROM = b"From "
_MAILDIR_FOLDERS = ("cur", "new")


class ImportSourceError(StoreError):
    """A source to import from is missing or is not what it claims to be."""


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ImportSourceError(f"{path} is not a file")


def eml_messages(paths: Iterable[Path]) -> Iterator[bytes]:
    """Each file as one message (an .eml file holds exactly one).

    Every file is checked before the first is read, so a typo imports nothing.
    """
    files = list(paths)
    for path in files:
        _require_file(path)
        if path.stat().st_size == 0:
            raise ImportSourceError(f"{path.name} is empty; an .eml file holds one message")
    return (path.read_bytes() for path in files)


def mbox_messages(path: Path) -> Iterator[bytes]:
    """The messages of an mbox file, one at a time, without their ``From `` lines.

    Checked before the first message is read: an mbox file is empty or starts with a
    ``From `` line; anything else would silently import nothing.
    """
    _require_file(path)
    with path.open("rb") as stream:
        start = stream.read(len(MBOX_FROM))
    if start and start != MBOX_FROM:
        raise ImportSourceError(
            f"{path.name} is not an mbox file: it does not start with a 'From ' line"
        )
    return _mbox_messages(path)


def _mbox_messages(path: Path) -> Iterator[bytes]:
    box = stdlib_mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()


def maildir_messages(root: Path) -> Iterator[bytes]:
    """The messages of a Maildir folder (``cur/`` then ``new/``), each file in name order."""
    if not any((root / sub).is_dir() for sub in _MAILDIR_FOLDERS):
        raise ImportSourceError(f"{root} is not a Maildir (no cur/ or new/ folder)")
    return _maildir_messages(root)


def _maildir_messages(root: Path) -> Iterator[bytes]:
    for sub in _MAILDIR_FOLDERS:
        folder = root / sub
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    yield path.read_bytes()


def maildir_count(root: Path) -> int:
    """How many messages :func:`maildir_messages` will read (for a progress bar)."""
    return sum(
        len(list((root / sub).glob("[!.]*"))) for sub in _MAILDIR_FOLDERS if (root / sub).is_dir()
    )


async def import_messages(
    store: MailStore,
    guid: uuid.UUID,
    messages: Iterator[bytes],
    *,
    delivered: Callable[[], None] | None = None,
) -> int:
    """Deliver ``messages`` to mailbox ``guid`` in order; how many were delivered.

    Each message is read in a worker thread: parsing a large mbox file must not stall the
    event loop of the service host, which also supervises the POP3 services.
    ``delivered`` is called after each message.
    """
    count = 0
    try:
        while (content := await asyncio.to_thread(next, messages, None)) is not None:
            await store.deliver(guid, content)
            count += 1
            if delivered is not None:
                delivered()
    finally:
        if isinstance(messages, Generator):
            messages.close()  # an mbox file is closed at once, even when a delivery failed
    return count
