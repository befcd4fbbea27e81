"""A :class:`~popgate.store.MailStore` on Maildir directories.

Layout
    ``root/<guid>/`` holds one Maildir per mailbox, named by the mailbox GUID (never by
    a user-supplied name): ``tmp/``, ``new/`` and ``cur/``, plus three files of ours:
    ``popgate.lock`` (the POP3 maildrop lock), ``popgate-uidlist`` (the index) and
    ``popgate-uidlist.lock`` (a short lock that serialises index refreshes).

Deliveries
    The message is stored as given (LF or CRLF), written to ``tmp/`` and fsynced, then
    renamed into ``new/`` and the directory fsynced, so readers see all of it or nothing.
    The name is ``<sec>.M<usec>P<pid>Q<counter>.<host>,S=<octets on disk>,W=<octets with
    every line end as CRLF>``. The host has ``/``, ``:``, ``,``, ``\\`` and non-printables
    written as ``\\ooo``: the Maildir convention for ``/`` and ``:``, extended so that the
    name stays a valid UID.

UIDs
    A UID is a pure function of the message's *base name*, the file name up to the first
    ``:`` (``cur/`` files gain ``:2,<flags>`` when a mail client moves or flags them, and
    that must not change the UID). A base name of 1 to 70 characters in 0x21..0x7E, which
    every name we deliver has unless the host name is long, *is* the UID. Any other base
    name maps to ``:`` followed by the first 128 bits of its SHA-256 in hex. A base name
    never contains ``:``, so the two forms cannot collide. Because no state is involved,
    losing or deleting the index never changes a UID, and no uidvalidity or next-uid
    counter is needed. A UID is reused only if a base name is, which the Maildir naming
    rules (time, pid, counter, host) exclude. Two files with the same base name (a copy
    left in ``new/`` next to its ``cur/`` twin) are one message: ``cur/`` is served, and
    commit removes both.

Sizes
    The RFC 1939 size is ``crlf_size`` of the file, i.e. the length of the ``to_crlf`` form
    that RETR sends (with a final CRLF if the file lacks one). A ``,W=<n>`` in the name
    (ours, Dovecot's) gives the line-end part. Indexing then reads only the file's last
    octet, to add the final CRLF if needed. Files of other programs without ``W=`` are read
    once, streaming, and the size is cached in the index. Maildir message files are
    immutable, so a cached size stays right. If the final-line-ending rule in
    ``popgate.protocol._message`` ever changes, bump ``INDEX_HEADER`` so caches are rebuilt.

Order
    Messages are listed in the order the index first saw them (delivery order). Files new to
    the index are sorted by the timestamp in their name: ``<sec>.`` plus the ``M<usec>`` and
    ``Q<counter>`` parts when present, so our own deliveries sort by time then counter.
    A foreign name without a leading timestamp sorts by its mtime. The name breaks ties.
    If the index is lost, the rebuilt order is this sort over every file. It can differ
    from the old order only for foreign files that arrived out of timestamp order.
    Either way, message numbers are only per session (RFC 1939).

Index
    ``popgate-uidlist`` starts with the line ``popgate-uidlist 1``; each further line is
    ``<uid> <crlf-size> <base-name>``, where the base name has ``\\``, LF and CR escaped.
    The index is rewritten (tmp file, fsync, rename, directory fsync) under the index lock
    when a refresh finds files added or removed. The index is only a cache: a corrupt line
    is dropped and its file re-indexed. Deliveries do not touch it. :meth:`MaildirStore.open`
    and :meth:`MaildirStore.stats` refresh it under the index lock, never the maildrop lock.
    That is why a delivery or ``stats()`` works while a POP3 session is open, and why the
    new message appears only at the next ``open()``.

Locking
    A session holds ``flock(LOCK_EX | LOCK_NB)`` on ``popgate.lock``, opened per session.
    An flock belongs to the open file description, so two sessions conflict even inside
    one process, and the kernel releases the lock when the process dies, so ``kill -9``
    leaves no stale lock. A process that forks (without exec) while a session is open
    shares the lock with its child. ``close()``, ``commit()`` and garbage collection of the
    session all release the lock. None of them deletes anything except ``commit()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import itertools
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from popgate.protocol._message import crlf_size, to_crlf, top_of_message

from ._base import MailboxLocked, MailboxNotFound, MessageGone, MessageInfo, StoreError

__all__ = ["MaildirSession", "MaildirStore", "uid_for_base_name"]

_log = logging.getLogger(__name__)

SESSION_LOCK = "popgate.lock"
INDEX = "popgate-uidlist"
INDEX_LOCK = "popgate-uidlist.lock"
INDEX_HEADER = "popgate-uidlist 1"

# new/ before cur/: a message moved new -> cur during the scan is then seen at least once.
_MESSAGE_DIRS = ("new", "cur")
#: Maildrops with at least this many messages keep their snapshot in memory between sessions
#: (smaller ones refresh in well under a millisecond per message anyway).
SNAPSHOT_CACHE_MIN_MESSAGES = 1000
#: Messages in all the snapshots a store keeps, least recently used dropped first (about
#: 300 bytes each: 150 MB at most).
SNAPSHOT_CACHE_MESSAGES = 500_000
#: A snapshot is reused only if new/, cur/ and the index last changed at least this long
#: before it was taken: a change within the same clock tick leaves an mtime unchanged.
SNAPSHOT_SETTLED_NS = 2_000_000_000
_SIZE_CHUNK = 1 << 20
_TOP_CHUNK = 1 << 16

_DIRECT_UID = re.compile(r"[\x21-\x7e]{1,70}")
_NAMED_SIZE = re.compile(r",W=(\d{1,18})(?=,|$)")
_NAME_TIME = re.compile(r"(\d{1,12})\.([^.]*)")
_USEC = re.compile(r"M(\d{1,6})")
_COUNTER = re.compile(r"Q(\d{1,18})")
_INDEX_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_INDEX_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}

# Process-wide so that two stores on one root in one process never pick the same name.
_delivery_counter = itertools.count(1)


def uid_for_base_name(base: str) -> str:
    """The UID of the message whose file name, up to the first ``:``, is ``base``."""
    if _DIRECT_UID.fullmatch(base):
        return base
    return ":" + hashlib.sha256(os.fsencode(base)).hexdigest()[:32]


def _base_name(file_name: str) -> str:
    return file_name.partition(":")[0]


def _named_size(base: str) -> int | None:
    match = _NAMED_SIZE.search(base)
    return int(match[1]) if match else None


def _name_order(base: str) -> tuple[int, int] | None:
    """``(microseconds since the epoch, counter)`` from a Maildir-style name, if it has one."""
    match = _NAME_TIME.match(base)
    if match is None:
        return None
    unique = match[2]
    usec = _USEC.search(unique)
    counter = _COUNTER.search(unique)
    return (
        int(match[1]) * 1_000_000 + (int(usec[1]) if usec else 0),
        int(counter[1]) if counter else 0,
    )


def _maildir_hostname(hostname: str) -> str:
    parts: list[str] = []
    for char in hostname:
        if char in "/:,\\" or not "\x21" <= char <= "\x7e":
            parts.extend(f"\\{octet:03o}" for octet in char.encode("utf-8", "surrogateescape"))
        else:
            parts.append(char)
    return "".join(parts) or "localhost"


def _escape_index_name(base: str) -> str:
    if "\\" in base or "\n" in base or "\r" in base:
        return base.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return base


def _unescape_index_name(field: str) -> str | None:
    if "\\" not in field:
        return field
    try:
        return _INDEX_ESCAPE.sub(lambda match: _INDEX_UNESCAPES[match[1]], field)
    except KeyError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _line_ends_to_crlf(data: bytes) -> bytes:
    """Bare LF to CRLF, and nothing else: depends only on each LF and the octet before it."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _line_ends_to_crlf_size(data: bytes) -> int:
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def _end_fixup(last_octet: bytes) -> int:
    """Octets :func:`to_crlf` adds at the end of a message whose last octet is ``last_octet``.

    Derived from the shared helpers rather than restated, so the final-line-ending rule
    (RFC 1939 item 9: CRLF before the terminating dot) lives in one place.
    """
    return crlf_size(last_octet) - _line_ends_to_crlf_size(last_octet)


def _pieces(stream: BinaryIO, chunk_size: int) -> Iterator[tuple[bytes, bool]]:
    """``(raw piece, is_last)`` for the rest of ``stream``; no CR LF pair straddles two pieces.

    The last piece is never empty unless the stream is, and then nothing is yielded.
    """
    held = b""
    pending: bytes | None = None
    while chunk := stream.read(chunk_size):
        data = held + chunk
        if data.endswith(b"\r"):
            held, data = b"\r", data[:-1]
        else:
            held = b""
        if not data:
            continue
        if pending is not None:
            yield pending, False
        pending = data
    if held:
        if pending is not None:
            yield pending, False
        pending = held
    if pending is not None:
        yield pending, True


def _crlf_pieces(stream: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """``to_crlf`` of the rest of ``stream``, in pieces: joined, they equal the whole."""
    for piece, last in _pieces(stream, chunk_size):
        # Inner pieces only need their line ends converted; to_crlf adds any final CRLF.
        yield to_crlf(piece) if last else _line_ends_to_crlf(piece)


def crlf_size_of_stream(stream: BinaryIO, chunk_size: int = _SIZE_CHUNK) -> int:
    """``crlf_size`` of the rest of ``stream``, read ``chunk_size`` octets at a time."""
    return sum(
        crlf_size(piece) if last else _line_ends_to_crlf_size(piece)
        for piece, last in _pieces(stream, chunk_size)
    )


def top_of_stream(stream: BinaryIO, body_lines: int, chunk_size: int = _TOP_CHUNK) -> bytes:
    """``top_of_message(to_crlf(rest of stream), body_lines)``, reading only as far as needed."""
    if body_lines < 0:
        raise ValueError("body_lines must not be negative")
    buffer = bytearray()
    search_from = 0
    position = -1  # end of what TOP returns so far; -1 until the header end is found
    remaining = body_lines
    for piece in _crlf_pieces(stream, chunk_size):
        buffer += piece
        if position < 0:
            header_end = buffer.find(b"\r\n\r\n", search_from)
            if header_end < 0:
                search_from = max(0, len(buffer) - 3)
                continue
            position = header_end + 4
        while remaining:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            position = line_end + 2
            remaining -= 1
        if not remaining:
            return bytes(buffer[:position])
    return top_of_message(bytes(buffer), body_lines)


def _last_octet(path: str) -> bytes:
    # Plain descriptors, not Path.open: the first index of a big maildrop calls this once per
    # message, and pathlib's and io's overhead was most of that time.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        end = os.fstat(fd).st_size
        return os.pread(fd, 1, end - 1) if end else b""
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Entry:
    """One indexed message; ``path`` is relative to the mailbox and may move (new -> cur)."""

    uid: str
    size: int
    base: str
    path: str


@dataclass(slots=True)
class _Scan:
    """Message files found on disk: base name -> preferred path, plus any duplicates."""

    paths: dict[str, str]
    duplicates: dict[str, list[str]]


def _scan(mailbox: Path) -> _Scan:
    paths: dict[str, str] = {}
    duplicates: dict[str, list[str]] = {}
    for sub in _MESSAGE_DIRS:
        try:
            iterator = os.scandir(mailbox / sub)
        except FileNotFoundError:
            continue
        with iterator:
            for item in iterator:
                name = item.name
                if name.startswith("."):
                    continue
                try:
                    if not item.is_file():
                        continue
                except OSError:
                    continue
                base = _base_name(name)
                path = f"{sub}/{name}"
                previous = paths.get(base)
                if previous is None:
                    paths[base] = path
                    continue
                # Prefer cur/ (the client has seen it there), then the smaller name.
                keep, extra = sorted((previous, path), key=lambda p: (p[:4] != "cur/", p))
                paths[base] = keep
                duplicates.setdefault(base, []).append(extra)
    return _Scan(paths, duplicates)


def _load_index(mailbox: Path) -> dict[str, tuple[str, int]]:
    """The index as base name -> (uid, size), in index order; empty if missing or unknown."""
    try:
        text = (mailbox / INDEX).read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return {}
    lines = text.split("\n")
    if lines[0] != INDEX_HEADER:
        _log.warning("%s: unknown index format; rebuilding it", mailbox / INDEX)
        return {}
    index: dict[str, tuple[str, int]] = {}
    for line in lines[1:]:
        fields = line.split(" ", 2)
        if len(fields) != 3:
            continue
        uid, size_text, name_field = fields
        base = _unescape_index_name(name_field)
        if base is None or not (size_text.isascii() and size_text.isdigit()):
            continue
        # A UID that does not match its name means a damaged or foreign line: re-derive.
        if uid != uid_for_base_name(base):
            continue
        index[base] = (uid, int(size_text))
    return index


def _write_index(mailbox: Path, entries: Sequence[_Entry]) -> None:
    lines = [INDEX_HEADER]
    lines.extend(f"{e.uid} {e.size} {_escape_index_name(e.base)}" for e in entries)
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    temporary = mailbox / (INDEX + ".tmp")
    try:
        with open(temporary, "wb", opener=_private_opener) as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(mailbox / INDEX)
        _fsync_dir(mailbox)
    except OSError as error:
        # The index is a cache; a full disk must not stop POP3 from serving the mail. An
        # expected condition, so one line without a traceback; no partial copy is left.
        _log.warning("%s: could not write the index: %s", mailbox / INDEX, error)
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


@contextmanager
def _index_lock(mailbox: Path) -> Iterator[None]:
    try:
        fd = os.open(mailbox / INDEX_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (FileNotFoundError, NotADirectoryError):
        raise MailboxNotFound(mailbox.name) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocking, but held only while indexing
        yield
    finally:
        os.close(fd)


def _order_key(mailbox: Path, base: str, path: str) -> tuple[int, int, str] | None:
    order = _name_order(base)
    if order is None:
        try:
            mtime_ns = os.stat(mailbox / path).st_mtime_ns
        except FileNotFoundError:
            return None
        order = (mtime_ns // 1000, 0)
    return (*order, base)


def _index_new_files(mailbox: Path, found: dict[str, str]) -> list[_Entry]:
    """Entries for files the index does not know yet, in delivery order."""
    fresh: list[tuple[tuple[int, int, str], _Entry]] = []
    folder = str(mailbox)
    for base, path in found.items():
        named = _named_size(base)
        try:
            if named is not None:
                # W= counts line ends only (as in Dovecot); one octet tells the end fix-up.
                size = named + _end_fixup(_last_octet(f"{folder}/{path}"))
            else:
                with (mailbox / path).open("rb") as stream:
                    size = crlf_size_of_stream(stream)
        except FileNotFoundError:
            continue  # deleted, or moved to cur/ after the scan: the next refresh sees it
        except OSError:
            # One unreadable file must not lock the owner out of the rest of the mail.
            _log.warning("%s: cannot index %s; skipped", mailbox, path, exc_info=True)
            continue
        key = _order_key(mailbox, base, path)
        if key is not None:
            fresh.append((key, _Entry(uid_for_base_name(base), size, base, path)))
    fresh.sort(key=lambda item: item[0])
    return [entry for _, entry in fresh]


def _refresh(mailbox: Path) -> tuple[list[_Entry], dict[str, list[str]]]:
    """Bring the index up to date with the files; return the entries and duplicate paths."""
    if not mailbox.is_dir():
        raise MailboxNotFound(mailbox.name)
    with _index_lock(mailbox):
        scan = _scan(mailbox)
        index = _load_index(mailbox)
        if not index.keys() <= scan.paths.keys():
            # A flag change renames cur/ files; readdir may miss a file renamed during the
            # scan, so look again before believing a message is gone.
            again = _scan(mailbox)
            for base, path in again.paths.items():
                scan.paths.setdefault(base, path)
        found = scan.paths
        entries: list[_Entry] = []
        changed = False
        for base, (uid, size) in index.items():
            if base in found:
                entries.append(_Entry(uid, size, base, found.pop(base)))
            else:
                changed = True
        if found:
            changed = True
            entries.extend(_index_new_files(mailbox, found))
        if changed:
            _write_index(mailbox, entries)
    return entries, scan.duplicates


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What a session starts from: the listing, and the files behind it."""

    messages: tuple[MessageInfo, ...]
    entries: dict[str, _Entry]
    duplicates: dict[str, list[str]]

    @classmethod
    def of(cls, entries: list[_Entry], duplicates: dict[str, list[str]]) -> _Snapshot:
        """Build the listing from refreshed entries."""
        return cls(
            tuple(MessageInfo(entry.uid, entry.size) for entry in entries),
            {entry.uid: entry for entry in entries},
            {uid_for_base_name(base): paths for base, paths in duplicates.items()},
        )


#: (inode, mtime in ns, size) of new/, cur/ and the index.
_Signature = tuple[tuple[int, int, int], ...]


def _signature(mailbox: Path) -> _Signature | None:
    """What changes whenever a message file or the index changes; None if one is missing.

    Creating, renaming or removing a file changes its folder's mtime; the index is replaced
    by a rename, which gives it a new inode.
    """
    parts = []
    for path in (mailbox / "new", mailbox / "cur", mailbox / INDEX):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        parts.append((info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(parts)


def _settled(signature: _Signature) -> bool:
    """Whether every part last changed long enough ago that a change since shows."""
    newest = max(mtime for _, mtime, _ in signature)
    return newest <= time.time_ns() - SNAPSHOT_SETTLED_NS


def _release_lock(fd: int) -> None:
    os.close(fd)  # closing the last descriptor of the open file description drops the flock


def _take_session_lock(mailbox: Path) -> int:
    lock_path = mailbox / SESSION_LOCK
    for _ in range(3):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (FileNotFoundError, NotADirectoryError):
            raise MailboxNotFound(mailbox.name) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MailboxLocked(mailbox.name) from None
        except BaseException:
            os.close(fd)
            raise
        # If the mailbox was deleted (and maybe recreated) meanwhile, we locked a dead file.
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise MailboxNotFound(mailbox.name)


#: Where the delivery locks live: outside the maildirs, so that they outlast a moved copy.
LOCKS_DIR = ".locks"
#: How long a delivery waits for a mailbox frozen by a move before "try again later".
DELIVERY_WAIT = 30.0
_POLL = 0.02


def _delivery_lock(root: Path, guid: uuid.UUID) -> int:
    folder = root / LOCKS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    return os.open(folder / f"{guid}.deliver", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _lock_within(fd: int, operation: int, timeout: float) -> bool:
    """flock ``operation`` on ``fd`` within ``timeout`` seconds (flock itself cannot time out)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)


@asynccontextmanager
async def _delivery_guard(root: Path, guid: uuid.UUID, wait: float) -> AsyncIterator[None]:
    """Hold the mailbox's delivery lock shared: a delivery, which a freeze waits for.

    :raises StoreError: the mailbox stayed frozen for ``wait`` seconds.
    """

    def take() -> int:
        fd = _delivery_lock(root, guid)
        if _lock_within(fd, fcntl.LOCK_SH, wait):
            return fd
        os.close(fd)
        raise StoreError(f"mailbox {guid} is being moved; try again later")

    fd = await asyncio.to_thread(take)
    try:
        yield
    finally:
        os.close(fd)


class MaildirSession:
    """An open Maildir maildrop: the snapshot, reads, and UPDATE.

    Also an async context manager that closes the session on exit.
    """

    def __init__(self, mailbox: Path, lock_fd: int, snapshot: _Snapshot) -> None:
        self._mailbox = mailbox
        # Shared with later sessions when the store caches it: only read, never changed,
        # except an entry's path, which follows its file (new -> cur) as it moves.
        self._messages = snapshot.messages
        self._entries = snapshot.entries
        self._duplicates = snapshot.duplicates
        self._closing = False
        # The lock is released exactly once: by close(), by commit(), or when collected.
        self._unlock = weakref.finalize(self, _release_lock, lock_fd)

    @property
    def messages(self) -> Sequence[MessageInfo]:
        """The snapshot fixed at open, in delivery order (oldest first)."""
        return self._messages

    @property
    def closed(self) -> bool:
        """Whether the session has been committed or closed."""
        return self._closing or not self._unlock.alive

    async def __aenter__(self) -> MaildirSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _entry(self, uid: str) -> _Entry:
        if self.closed:
            raise StoreError("the maildrop session is closed")
        return self._entries[uid]

    def _open_message(self, entry: _Entry) -> BinaryIO:
        try:
            return (self._mailbox / entry.path).open("rb")
        except FileNotFoundError:
            pass
        # A mail client may have moved it new -> cur or changed its flags since the scan.
        path = _scan(self._mailbox).paths.get(entry.base)
        if path is None:
            raise MessageGone(entry.uid)
        entry.path = path
        try:
            return (self._mailbox / path).open("rb")
        except FileNotFoundError:
            raise MessageGone(entry.uid) from None

    def _read_blocking(self, entry: _Entry) -> bytes:
        with self._open_message(entry) as stream:
            content = stream.read()
        # to_crlf only ever adds octets, so a file as long as its CRLF size is in CRLF form
        # already and need not be rewritten (it saves a copy per megabyte on the hot path).
        if len(content) != entry.size:
            content = to_crlf(content)
        if len(content) != entry.size:
            _log.warning(
                "%s: %s changed on disk: %d octets, %d in the listing",
                self._mailbox,
                entry.path,
                len(content),
                entry.size,
            )
        return content

    def _read_top_blocking(self, entry: _Entry, body_lines: int) -> bytes:
        with self._open_message(entry) as stream:
            return top_of_stream(stream, body_lines)

    async def read(self, uid: str) -> bytes:
        """The whole message in CRLF form, ``size`` octets.

        :raises KeyError: ``uid`` is not in the snapshot.
        :raises MessageGone: the file no longer exists.
        :raises StoreError: the session is closed.
        """
        return await asyncio.to_thread(self._read_blocking, self._entry(uid))

    async def read_top(self, uid: str, body_lines: int) -> bytes:
        """Header, blank line and ``body_lines`` body lines in CRLF form, read incrementally.

        :raises ValueError: ``body_lines`` is negative.
        :raises KeyError: ``uid`` is not in the snapshot.
        :raises MessageGone: the file no longer exists.
        :raises StoreError: the session is closed.
        """
        if body_lines < 0:
            raise ValueError("body_lines must not be negative")
        return await asyncio.to_thread(self._read_top_blocking, self._entry(uid), body_lines)

    def _unlink(self, path: str, touched: set[str]) -> bool:
        try:
            os.unlink(self._mailbox / path)
        except FileNotFoundError:
            return False
        touched.add(path.partition("/")[0])
        return True

    def _remove(self, uids: list[str]) -> list[str]:
        failed: list[str] = []
        touched: set[str] = set()
        for uid in dict.fromkeys(uids):
            entry = self._entries.get(uid)
            if entry is None:
                failed.append(uid)  # not in this snapshot: nothing we may delete
                continue
            try:
                if not self._unlink(entry.path, touched):
                    # Moved since the scan (new -> cur, flags), or already gone.
                    path = _scan(self._mailbox).paths.get(entry.base)
                    if path is not None:
                        self._unlink(path, touched)
                for duplicate in self._duplicates.get(uid, ()):
                    self._unlink(duplicate, touched)
            except OSError:
                _log.warning("%s: could not remove %s", self._mailbox, uid, exc_info=True)
                failed.append(uid)
        for sub in touched:
            try:
                _fsync_dir(self._mailbox / sub)
            except OSError:
                _log.warning("%s: fsync of %s failed", self._mailbox, sub, exc_info=True)
        return failed

    def _remove_and_unlock(self, uids: list[str]) -> list[str]:
        try:
            return self._remove(uids)
        finally:
            self._unlock()

    async def commit(self, deleted: Collection[str]) -> list[str]:
        """Remove ``deleted`` (POP3 UPDATE), release the lock, return the UIDs not removed.

        A message already gone counts as removed; a UID outside the snapshot is returned.
        If the caller is cancelled, the removal still finishes and then releases the lock.

        :raises StoreError: the session is already closed.
        """
        if self.closed:
            raise StoreError("the maildrop session is closed")
        self._closing = True
        uids = list(deleted)
        future = asyncio.get_running_loop().run_in_executor(None, self._remove_and_unlock, uids)
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Release the lock without deleting anything; idempotent."""
        self._closing = True
        self._unlock()


class MaildirStore:
    """Mailboxes as Maildir directories under ``root``, one per mailbox GUID."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._hostname = _maildir_hostname(socket.gethostname())
        #: Snapshots of big maildrops by mailbox folder, with the signature they match.
        self._snapshots: OrderedDict[Path, tuple[_Signature, _Snapshot]] = OrderedDict()
        self._snapshots_lock = threading.Lock()

    @property
    def root(self) -> Path:
        """The directory that holds one Maildir per mailbox."""
        return self._root

    def mailbox_path(self, guid: uuid.UUID) -> Path:
        """The Maildir of mailbox ``guid`` (which need not exist)."""
        if not isinstance(guid, uuid.UUID):
            # str(UUID) is the only name that may reach the file system.
            raise TypeError(f"mailbox id must be a uuid.UUID, not {type(guid).__name__}")
        return self._root / str(guid)

    def _create_blocking(self, mailbox: Path) -> None:
        if mailbox.is_dir():
            return
        self._root.mkdir(parents=True, exist_ok=True)
        # Build it aside and rename it in, so a Maildir is never seen half made.
        staging = Path(tempfile.mkdtemp(prefix=f".creating-{mailbox.name}-", dir=self._root))
        try:
            for sub in ("tmp", "new", "cur"):
                (staging / sub).mkdir(mode=0o700)
            _fsync_dir(staging)
            try:
                staging.rename(mailbox)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and mailbox.is_dir():
                    return  # created concurrently
                raise
            _fsync_dir(self._root)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _delete_blocking(self, mailbox: Path) -> None:
        # Rename first: from then on open(), deliver() and stats() see no mailbox at all.
        doomed = self._root / f".deleting-{mailbox.name}-{secrets.token_hex(8)}"
        try:
            mailbox.rename(doomed)
        except FileNotFoundError:
            return
        _fsync_dir(self._root)
        shutil.rmtree(doomed)

    def _unique_name(self, raw_size: int, size: int) -> str:
        seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        return (
            f"{seconds}.M{nanoseconds // 1000}P{os.getpid()}Q{next(_delivery_counter)}"
            f".{self._hostname},S={raw_size},W={size}"
        )

    def _deliver_blocking(self, mailbox: Path, content: bytes) -> str:
        size = _line_ends_to_crlf_size(content)
        while True:
            name = self._unique_name(len(content), size)
            temporary = mailbox / "tmp" / name
            try:
                stream = open(temporary, "xb", opener=_private_opener)  # noqa: SIM115
            except FileExistsError:
                continue
            except (FileNotFoundError, NotADirectoryError):
                raise MailboxNotFound(mailbox.name) from None
            break
        try:
            with stream:
                stream.write(content)
                stream.flush()
                os.fsync(stream.fileno())
            # The name is unique (time, pid, counter, host), so rename cannot clobber mail.
            temporary.rename(mailbox / "new" / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            if not mailbox.is_dir():
                raise MailboxNotFound(mailbox.name) from None
            raise
        _fsync_dir(mailbox / "new")
        return uid_for_base_name(name)

    async def create_mailbox(self, guid: uuid.UUID) -> None:
        """Create an empty Maildir for ``guid``; does nothing if it exists."""
        await asyncio.to_thread(self._create_blocking, self.mailbox_path(guid))

    async def delete_mailbox(self, guid: uuid.UUID) -> None:
        """Remove the Maildir and all its messages; does nothing if it does not exist.

        An open session on it keeps its lock, and its reads raise :class:`MessageGone`.
        """
        await asyncio.to_thread(self._delete_blocking, self.mailbox_path(guid))

    async def deliver(self, guid: uuid.UUID, content: bytes) -> str:
        """Write ``content`` to ``tmp/``, fsync, rename it into ``new/``, return its UID.

        :raises MailboxNotFound: the mailbox does not exist.
        """
        return await asyncio.to_thread(self._deliver_blocking, self.mailbox_path(guid), content)

    async def stats(self, guid: uuid.UUID) -> tuple[int, int]:
        """``(message count, total CRLF octets)``, refreshing the index but not locking.

        :raises MailboxNotFound: the mailbox does not exist.
        """
        entries, _ = await asyncio.to_thread(_refresh, self.mailbox_path(guid))
        return len(entries), sum(entry.size for entry in entries)

    def delivery_guard(
        self, guid: uuid.UUID, wait: float = DELIVERY_WAIT
    ) -> AbstractAsyncContextManager[None]:
        """Held by a delivery from the check of the holding server to the write; a mailbox
        move waits for it and holds it back (see ``_move``).

        :raises StoreError: the mailbox stayed frozen by a move for ``wait`` seconds.
        """
        return _delivery_guard(self._root, guid, wait)

    async def open(self, guid: uuid.UUID) -> MaildirSession:
        """Take the maildrop lock (without waiting), refresh the index, snapshot.

        :raises MailboxLocked: another session holds the lock.
        :raises MailboxNotFound: the mailbox does not exist.
        """
        mailbox = self.mailbox_path(guid)
        lock_fd = _take_session_lock(mailbox)  # a few syscalls: fine on the event loop
        try:
            snapshot = await asyncio.to_thread(self._snapshot, mailbox)
        except BaseException:
            _release_lock(lock_fd)
            raise
        return MaildirSession(mailbox, lock_fd, snapshot)

    def _snapshot(self, mailbox: Path) -> _Snapshot:
        """The maildrop's listing: the one kept from the last session if nothing changed
        since, else a refresh of the index against the files (the caller holds the lock)."""
        before = _signature(mailbox)
        with self._snapshots_lock:
            kept = self._snapshots.get(mailbox)
            if kept is not None and before is not None and kept[0] == before:
                self._snapshots.move_to_end(mailbox)
                return kept[1]
        entries, duplicates = _refresh(mailbox)
        snapshot = _Snapshot.of(entries, duplicates)
        # Small maildrops are never kept: spare them the second round of stats.
        big = len(entries) >= SNAPSHOT_CACHE_MIN_MESSAGES
        after = _signature(mailbox) if big else None
        with self._snapshots_lock:
            self._snapshots.pop(mailbox, None)
            # Kept only if nothing changed while refreshing (a delivery during the scan may
            # be missing from it) and every change is old enough to be seen in an mtime.
            if (
                after is not None
                and _settled(after)
                and before is not None
                and before[:2] == after[:2]
            ):
                self._snapshots[mailbox] = (after, snapshot)
                held = sum(len(kept.messages) for _, kept in self._snapshots.values())
                while held > SNAPSHOT_CACHE_MESSAGES:
                    _, (_, dropped) = self._snapshots.popitem(last=False)
                    held -= len(dropped.messages)
        return snapshot
