"""Mailbox moves between Mailbox servers (New-MoveRequest, ``popgate mailbox move``).

The host of the *target* server runs the move; the source's host serves its maildrop to it
over the control API (``/maildrops/...``, to that server only, as a server: see ``_peers``).
Every step can be repeated, so a move interrupted anywhere (a host killed, a computer
unreachable) goes on from where it stands when the target's host runs again or an
administrator resumes it, and loses or duplicates nothing:

1. **Copy** (InProgress): every message file the target lacks, under its own name, so every
   UID stays (``store._move``). The source keeps serving the mailbox meanwhile.
2. **Freeze** the source: its host waits for deliveries under way and then holds back POP3
   sessions and deliveries. A mailbox in a POP3 session waits here until the session ends.
3. **Catch up** with the frozen source: copy what arrived, remove what a session deleted,
   adopt its index (message order); then ask for the frozen manifest again, and go on only
   when nothing changed (the freeze held throughout).
4. **Switch** (one directory transaction): the mailbox is now held by the target, whose
   backend serves it from the next login; the status becomes CompletionInProgress. The set
   of messages switched with is saved first, under the data directory.
5. **Clean up**: freeze the source again (waiting for deliveries that checked the holder
   before the switch), copy anything that still arrived there after step 3 and drop what was
   deleted there since (only possible if its host died during step 4), then remove the
   source's copy; Completed.

Before the switch, Remove-MoveRequest cancels: the source is thawed and the target's copy
removed. After it, the move can only complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx

from popgate.directory import Directory, MoveRequest, MoveStatus
from popgate.home import Home
from popgate.host._peers import PeerError, PeerHosts, refusal_of
from popgate.store import MailboxNotFound, MaildirStore, StoreError
from popgate.store._move import (
    Freeze,
    ManifestEntry,
    freeze,
    install_file,
    install_index,
    manifest,
    present_bases,
    prune,
    read_file,
    read_index,
    remove_bases,
)

__all__ = ["FREEZE_LEASE", "MoveError", "Mover", "SourceMaildrops"]

logger = logging.getLogger("popgate.host")

_T = TypeVar("_T")

#: A freeze not renewed or released within this time thaws by itself, so that a target host
#: that died does not keep the source's mailbox locked.
FREEZE_LEASE = 120.0
#: How long the source waits for deliveries under way when it freezes.
FREEZE_WAIT = 30.0
#: Retry pauses of a move that meets an error (doubling up to the last).
RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0, 15.0)
#: Waiting for a POP3 session on the source to end.
IN_USE_PAUSE = 1.0
#: The API's status for "a POP3 session holds the maildrop".
IN_USE_STATUS = 409
ACTIVE = (MoveStatus.QUEUED, MoveStatus.IN_PROGRESS, MoveStatus.COMPLETION_IN_PROGRESS)


class MoveError(Exception):
    """A step of a move failed; retrying may mend it."""


class SourceBusyError(MoveError):
    """A POP3 session holds the source's maildrop."""


# --- the source's side -----------------------------------------------------------------------


@dataclass
class _Held:
    freeze: Freeze
    expiry: asyncio.TimerHandle


@dataclass
class SourceMaildrops:
    """What a source host does for the target of a move: list, read, freeze, remove."""

    store: MaildirStore
    _held: dict[uuid.UUID, _Held] = field(default_factory=dict)

    def maildir(self, guid: uuid.UUID) -> Path:
        """The maildrop's folder on this computer."""
        return self.store.mailbox_path(guid)

    async def _on_maildrop(self, guid: uuid.UUID, held_here: bool, step: Callable[[], _T]) -> _T:
        """Run the blocking ``step`` on the maildrop in a thread. If it finds no maildrop
        (:class:`MailboxNotFound`) and the mailbox is held here, its maildrop was never used:
        create it empty and run ``step`` again. Creating it only when missing spares a stat
        on every call, and stays right whoever removes the maildrop meanwhile.
        """
        try:
            return await asyncio.to_thread(step)
        except MailboxNotFound:
            if not held_here:
                raise
        await self.store.create_mailbox(guid)
        return await asyncio.to_thread(step)

    async def manifest(self, guid: uuid.UUID, *, held_here: bool) -> list[ManifestEntry]:
        """The message files. A mailbox held here whose maildrop was never used has an empty
        one; for any other, :class:`MailboxNotFound` (the copy here is already removed).
        """
        return await self._on_maildrop(guid, held_here, partial(manifest, self.maildir(guid)))

    async def read(self, guid: uuid.UUID, path: str) -> bytes:
        """One message file."""
        return await asyncio.to_thread(read_file, self.maildir(guid), path)

    async def index(self, guid: uuid.UUID) -> bytes | None:
        """The maildrop's index, if it has one."""
        return await asyncio.to_thread(read_index, self.maildir(guid))

    async def freeze(self, guid: uuid.UUID, *, held_here: bool) -> list[ManifestEntry]:
        """Freeze (or renew the freeze of) the maildrop; its manifest while frozen.

        :raises MailboxLocked: a POP3 session holds it.
        :raises MailboxNotFound: it is not held here and the copy here is already removed.
        :raises StoreError: deliveries under way did not finish in time.
        """
        loop = asyncio.get_running_loop()
        held = self._held.get(guid)
        if held is None:
            taken = await self._on_maildrop(
                guid, held_here, partial(freeze, self.store.root, guid, FREEZE_WAIT)
            )
            held = self._held[guid] = _Held(taken, loop.call_later(FREEZE_LEASE, self.thaw, guid))
        else:
            held.expiry.cancel()
            held.expiry = loop.call_later(FREEZE_LEASE, self.thaw, guid)
        return await asyncio.to_thread(manifest, self.maildir(guid))

    def thaw(self, guid: uuid.UUID) -> None:
        """Let sessions and deliveries in again (nothing happens if not frozen)."""
        held = self._held.pop(guid, None)
        if held is not None:
            held.expiry.cancel()
            held.freeze.release()

    async def remove(self, guid: uuid.UUID) -> None:
        """Remove this computer's copy once the mailbox is held elsewhere, then thaw."""
        try:
            await self.store.delete_mailbox(guid)
        finally:
            self.thaw(guid)

    def close(self) -> None:
        """Thaw everything (the host is stopping)."""
        for guid in list(self._held):
            self.thaw(guid)


# --- the target's side -----------------------------------------------------------------------


def _bases(entries: list[ManifestEntry]) -> set[str]:
    return {entry.base for entry in entries}


class Mover:
    """Runs the moves whose target is this computer, one task per mailbox."""

    def __init__(self, directory: Directory, home: Home, peers: PeerHosts) -> None:
        self._directory = directory
        self._home = home
        self._peers = peers
        self._store = MaildirStore(home.mail_root)
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.source = SourceMaildrops(self._store)

    @property
    def _server(self) -> str:
        return self._home.server_name.lower()

    def _switched_file(self, guid: uuid.UUID) -> Path:
        return self._home.root / "moves" / f"{guid}.json"

    def running(self, guid: uuid.UUID) -> bool:
        """Whether this host is working on the move of ``guid``."""
        task = self._tasks.get(guid)
        return task is not None and not task.done()

    def start(self, guid: uuid.UUID) -> None:
        """Work on the move of ``guid`` (again) unless already doing so."""
        if self.running(guid):
            return
        task = asyncio.create_task(self._run(guid), name=f"move {guid}")
        self._tasks[guid] = task

    async def resume_all(self) -> None:
        """Take up every unfinished move to this computer (at host start)."""
        for request in await self._directory.list_move_requests(
            target=self._server, statuses=ACTIVE
        ):
            logger.info("resuming the move of %s from %s", request.mailbox, request.source_server)
            self.start(request.mailbox_guid)

    async def cancel(self, request: MoveRequest) -> bool:
        """Remove-MoveRequest before the switch: stop, thaw the source, drop the copy here.

        False (and the move goes on) if it switched meanwhile: then it can only complete.
        """
        guid = request.mailbox_guid
        task = self._tasks.pop(guid, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        current = await self._directory.get_move_request(guid)
        mailbox = await self._directory.get_mailbox_by_guid(guid)
        if (current is not None and current.status is MoveStatus.COMPLETION_IN_PROGRESS) or (
            mailbox is not None and mailbox.server == self._server
        ):
            self.start(guid)
            return False
        with contextlib.suppress(PeerError, MoveError):
            await self._call(request, "DELETE", "/freeze")
        await self._store.delete_mailbox(guid)
        return True

    async def close(self) -> None:
        """Stop every move (the host is stopping); each resumes at the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.source.close()
        await self._peers.close()

    # -- one move --------------------------------------------------------------------------

    async def _run(self, guid: uuid.UUID) -> None:
        failures = 0
        while True:
            try:
                request = await self._directory.get_move_request(guid)
            except Exception as error:  # noqa: BLE001 - the directory is down: wait for it
                logger.warning("move of %s: cannot read its request: %s", guid, error)
                await asyncio.sleep(RETRY_PAUSES[-1])
                continue
            if request is None or request.status not in ACTIVE:
                return
            try:
                if request.status is MoveStatus.COMPLETION_IN_PROGRESS:
                    await self._complete(request)
                    return
                await self._copy_and_switch(request)
                failures = 0
            except SourceBusyError as busy:
                await self._try_to_note(request, MoveStatus.IN_PROGRESS, str(busy))
                await asyncio.sleep(IN_USE_PAUSE)
            except Exception as error:
                # Whatever failed (a computer, the directory, a disk), every step can be
                # repeated: note it and try again, ever more slowly.
                if isinstance(error, (MoveError, PeerError, StoreError, OSError)):
                    message = error.message if isinstance(error, PeerError) else str(error)
                else:
                    message = f"{type(error).__name__}: {error}"
                    logger.exception("move of %s failed unexpectedly", request.mailbox)
                pause = RETRY_PAUSES[min(failures, len(RETRY_PAUSES) - 1)]
                failures += 1
                logger.warning("move of %s: %s; retrying in %g s", request.mailbox, message, pause)
                await self._try_to_note(
                    request, request.status, f"{message} (retrying in {pause:g} s, try {failures})"
                )
                await asyncio.sleep(pause)

    async def _note(self, request: MoveRequest, status: MoveStatus, detail: str) -> None:
        await self._directory.set_move_status(request.mailbox_guid, status, detail)

    async def _try_to_note(self, request: MoveRequest, status: MoveStatus, detail: str) -> None:
        """Note a wait or an error, if the directory can be reached at all."""
        try:
            await self._note(request, status, detail)
        except Exception as error:  # noqa: BLE001 - the move retries; the log says why
            logger.warning("move of %s: cannot record %r: %s", request.mailbox, detail, error)

    async def _copy_and_switch(self, request: MoveRequest) -> None:
        guid = request.mailbox_guid
        if request.status is MoveStatus.QUEUED:
            await self._note(request, MoveStatus.IN_PROGRESS, "Copying.")
        await self._store.create_mailbox(guid)
        copied = await self._sync(request, await self._held_listing(request, "GET", "/manifest"),
                                  prune_extra=False)  # fmt: skip
        await self._note(request, MoveStatus.IN_PROGRESS, f"Copied {copied} files; freezing.")
        frozen = await self._held_listing(request, "POST", "/freeze")
        while True:
            await self._sync(request, frozen, prune_extra=True)
            index = await self._call(request, "GET", "/index")
            if index is not None:
                await asyncio.to_thread(
                    install_index, self._store.mailbox_path(guid), index.content
                )
            confirmed = await self._held_listing(request, "POST", "/freeze")
            if _bases(confirmed) == _bases(frozen):
                break
            frozen = confirmed  # the freeze lapsed and was taken again: catch up again
        switched = self._switched_file(guid)
        switched.parent.mkdir(mode=0o700, exist_ok=True)
        switched.write_text(json.dumps(sorted(_bases(frozen))), encoding="utf-8")
        if not await self._directory.switch_mailbox_server(
            guid, request.source_server, request.target_server
        ):
            raise MoveError("the mailbox is no longer on the source, or the move was cancelled")
        logger.info(
            "move of %s: %s now serves it (%d messages)",
            request.mailbox,
            request.target_server,
            len(frozen),
        )

    async def _complete(self, request: MoveRequest) -> None:
        guid = request.mailbox_guid
        switched = self._switched_file(guid)
        known = set(json.loads(switched.read_text(encoding="utf-8")))
        at_source = await self._listing(request, "POST", "/freeze")
        late: list[ManifestEntry] = []
        gone: set[str] = set()
        if at_source is not None:  # None: removed there already, before an interruption
            maildir = self._store.mailbox_path(guid)
            late = [entry for entry in at_source if entry.base not in known]
            if late:
                here = await asyncio.to_thread(present_bases, maildir)
                for entry in late:
                    await self._fetch(request, maildir, entry, here)
            gone = known - _bases(at_source)
            if gone:
                # The target takes deliveries now: remove just these, never "all but".
                await asyncio.to_thread(remove_bases, maildir, gone)
            await self._call(request, "DELETE", "")
        await self._note(
            request,
            MoveStatus.COMPLETED,
            f"Completed: {request.target_server} holds the mailbox; the copy on "
            f"{request.source_server} is removed.",
        )
        switched.unlink(missing_ok=True)
        logger.info(
            "move of %s completed (%d late, %d gone)", request.mailbox, len(late), len(gone)
        )

    async def _sync(
        self, request: MoveRequest, source: list[ManifestEntry], *, prune_extra: bool
    ) -> int:
        """Make the copy here hold ``source``'s files; the number copied."""
        maildir = self._store.mailbox_path(request.mailbox_guid)
        # One scan of the copy here; install_file keeps ``present`` up to date.
        present = await asyncio.to_thread(present_bases, maildir)
        copied = 0
        for entry in source:
            if entry.base not in present:
                copied += await self._fetch(request, maildir, entry, present)
        if prune_extra:
            await asyncio.to_thread(prune, maildir, _bases(source))
        return copied

    async def _fetch(
        self, request: MoveRequest, maildir: Path, entry: ManifestEntry, present: set[str]
    ) -> int:
        """Copy one file of the source here unless ``present`` (the base names here, which
        this keeps up to date) holds its base name; 1 if copied, else 0."""
        answer = await self._call(request, "GET", f"/files/{entry.path}")
        if answer is None:
            return 0  # deleted at the source since it was listed; a later pass settles it
        return int(
            await asyncio.to_thread(install_file, maildir, entry.path, answer.content, present)
        )

    async def _held_listing(
        self, request: MoveRequest, method: str, path: str
    ) -> list[ManifestEntry]:
        """The source's manifest while it still holds the mailbox."""
        listing = await self._listing(request, method, path)
        if listing is None:
            raise MoveError(f"{request.source_server} no longer has the mailbox")
        return listing

    async def _listing(
        self, request: MoveRequest, method: str, path: str
    ) -> list[ManifestEntry] | None:
        """The source's manifest (GET /manifest, POST /freeze); None if its copy is gone."""
        answer = await self._call(request, method, path)
        if answer is None:
            return None
        try:
            files = answer.json()["files"]
            return [ManifestEntry(str(item["path"]), int(item["size"])) for item in files]
        except (ValueError, KeyError, TypeError):
            raise MoveError(f"{request.source_server} sent a malformed manifest") from None

    async def _call(self, request: MoveRequest, method: str, path: str) -> httpx.Response | None:
        """One call to the source's maildrop endpoints; None if what it names is gone."""
        url = f"/api/v1/maildrops/{request.mailbox_guid}{path}"
        answer = await self._peers.call(request.source_server, None, method, url)
        if answer.status_code == 404 and path:
            return None
        if answer.status_code == IN_USE_STATUS:
            raise SourceBusyError(
                f"Waiting for the POP3 session on {request.source_server} to end."
            )
        if answer.status_code >= 400:
            raise MoveError(f"{request.source_server} answered {method} {path or '/'}: "
                            f"{refusal_of(answer)}")  # fmt: skip
        return answer
