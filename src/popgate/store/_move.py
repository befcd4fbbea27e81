"""Moving a maildrop between Mailbox servers, file by file, keeping every UID.

A UID is a function of the message file's base name (see ``_maildir``), so a copy that keeps
the names keeps the UIDs: a client that left mail on the server downloads nothing twice.
The target writes each file to ``tmp/``, fsyncs it and renames it in, so a copy interrupted
anywhere leaves whole files or none, and copying again skips the names it already has.

While the mailbox switches servers the source is *frozen*: the POP3 session lock keeps POP3
sessions out, and the exclusive delivery lock waits for deliveries under way and holds new
ones back. A delivery takes the delivery lock shared (``MaildirStore.delivery_guard``) before it
asks
the directory which server holds the mailbox, so once the switch is made, a delivery that
waited sees the mailbox gone and answers "try again later" instead of writing to a copy that
no one will read. The delivery locks live outside the maildirs (``.locks/<guid>.deliver``)
so that they outlast the removal of the source's copy.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from ._base import MailboxNotFound, StoreError
from ._maildir import (
    _MESSAGE_DIRS,
    DELIVERY_WAIT,
    INDEX,
    _base_name,
    _delivery_lock,
    _fsync_dir,
    _index_lock,
    _lock_within,
    _private_opener,
    _release_lock,
    _take_session_lock,
)

__all__ = [
    "DELIVERY_WAIT",
    "Freeze",
    "ManifestEntry",
    "freeze",
    "install_file",
    "install_index",
    "manifest",
    "present_bases",
    "prune",
    "read_file",
    "read_index",
    "remove_bases",
]


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One message file of a maildrop: ``new/NAME`` or ``cur/NAME``, and its size on disk."""

    path: str
    size: int

    @property
    def base(self) -> str:
        """The base name, which the UID is made from."""
        return _base_name(self.path.partition("/")[2])


class Freeze:
    """A maildrop held still: no POP3 session, no delivery, until :meth:`release`."""

    def __init__(self, session_fd: int, delivery_fd: int) -> None:
        self._fds: list[int] = [session_fd, delivery_fd]

    def release(self) -> None:
        """Let sessions and deliveries in again; does nothing the second time."""
        while self._fds:
            _release_lock(self._fds.pop())


def freeze(root: Path, guid: uuid.UUID, timeout: float) -> Freeze:
    """Wait (up to ``timeout`` s) for deliveries under way, then lock out sessions and
    deliveries. Blocking: run it in a thread.

    :raises MailboxLocked: a POP3 session holds the maildrop (move it when the session ends).
    :raises StoreError: deliveries did not finish within ``timeout``.
    """
    delivery_fd = _delivery_lock(root, guid)
    try:
        if not _lock_within(delivery_fd, fcntl.LOCK_EX, timeout):
            raise StoreError(f"deliveries to mailbox {guid} did not finish in {timeout:g} s")
        return Freeze(_take_session_lock(root / str(guid)), delivery_fd)
    except BaseException:
        os.close(delivery_fd)
        raise


def manifest(maildir: Path) -> list[ManifestEntry]:
    """Every message file of the maildrop (``new/`` before ``cur/``, each sorted by name)."""
    if not maildir.is_dir():
        raise MailboxNotFound(maildir.name)
    entries = []
    for sub in _MESSAGE_DIRS:
        with os.scandir(maildir / sub) as listing:
            for item in sorted(listing, key=lambda item: item.name):
                if item.is_file(follow_symlinks=False) and not item.name.startswith("."):
                    try:
                        size = item.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue  # removed by a session's UPDATE meanwhile
                    entries.append(ManifestEntry(f"{sub}/{item.name}", size))
    return entries


def _checked(maildir: Path, path: str) -> Path:
    """``maildir/path`` for a manifest path; ValueError for anything else (no escapes)."""
    sub, slash, name = path.partition("/")
    if sub not in _MESSAGE_DIRS or not slash or not name or "/" in name or name.startswith("."):
        raise ValueError(f"{path!r} is not a message file of a maildrop")
    return maildir / sub / name


def read_file(maildir: Path, path: str) -> bytes:
    """The content of one message file; FileNotFoundError if it is gone."""
    return _checked(maildir, path).read_bytes()


def present_bases(maildir: Path) -> set[str]:
    """The base names of the maildrop's message files (each makes one UID)."""
    return {entry.base for entry in manifest(maildir)}


def install_file(maildir: Path, path: str, content: bytes, present: set[str] | None = None) -> bool:
    """Put one message file in place under its own name, durably; False if a file with the
    same base name (the same UID) is already there.

    Without ``present`` the maildrop is scanned for the base name. A copy of many files
    passes it instead: the maildrop's base names (:func:`present_bases`), taken once by a
    caller that alone installs files into the maildrop meanwhile. It is checked in place of
    a scan, and each base name installed is added to it, so that it stays a true account.
    """
    target = _checked(maildir, path)
    base = _base_name(target.name)
    if base in (present_bases(maildir) if present is None else present):
        return False
    temporary = maildir / "tmp" / f".move-{os.getpid()}-{target.name}"
    with open(temporary, "wb", opener=_private_opener) as stream:
        stream.write(content)
        stream.flush()
        os.fsync(stream.fileno())
    temporary.rename(target)
    if present is not None:
        present.add(base)  # it is there from now on, even if the fsync below fails
    _fsync_dir(target.parent)
    return True


def prune(maildir: Path, keep: Collection[str]) -> list[str]:
    """Remove every message file whose base name is not in ``keep`` (deleted at the source
    since it was copied); the paths removed. Only while nothing delivers to ``maildir``."""
    wanted = set(keep)
    return _remove_where(maildir, lambda base: base not in wanted)


def remove_bases(maildir: Path, bases: Collection[str]) -> list[str]:
    """Remove the message files whose base name is in ``bases``; the paths removed.

    Safe while deliveries arrive: a message delivered meanwhile has a new base name.
    """
    doomed = set(bases)
    return _remove_where(maildir, lambda base: base in doomed)


def _remove_where(maildir: Path, doomed: Callable[[str], bool]) -> list[str]:
    removed = []
    for entry in manifest(maildir):
        if doomed(entry.base):
            (maildir / entry.path).unlink(missing_ok=True)
            removed.append(entry.path)
    for sub in _MESSAGE_DIRS:
        _fsync_dir(maildir / sub)
    return removed


def read_index(maildir: Path) -> bytes | None:
    """The maildrop's index (its message order and cached sizes), or None."""
    try:
        return (maildir / INDEX).read_bytes()
    except FileNotFoundError:
        return None


def install_index(maildir: Path, content: bytes) -> None:
    """Adopt the source's index, so that messages keep their order; it is only a cache,
    which the next session's refresh corrects against the files."""
    with _index_lock(maildir):
        temporary = maildir / f".{INDEX}.move"
        with open(temporary, "wb", opener=_private_opener) as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(maildir / INDEX)
        _fsync_dir(maildir)
