"""The host's side of a mailbox move (``popgate.host._move``) without a network: the target
scans its copy once per pass, not once per file, and the source creates the maildrop of a
mailbox held here only when it is missing."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from pathlib import Path
from typing import cast

import httpx
import pytest

from popgate.directory import Directory, MoveRequest, MoveStatus
from popgate.home import Home
from popgate.host._move import Mover, SourceMaildrops
from popgate.host._peers import PeerHosts
from popgate.store import MailboxLocked, MailboxNotFound, MaildirStore
from popgate.store._move import ManifestEntry, manifest, read_file
from tests.store.test_move import counting_manifest

NO_DIRECTORY = cast("Directory", object())  # the steps tested here never reach it


def move_request(guid: uuid.UUID) -> MoveRequest:
    now = datetime.datetime.now(datetime.UTC)
    return MoveRequest(
        mailbox_guid=guid,
        mailbox="alice",
        source_server="mbx1",
        target_server="mbx2",
        status=MoveStatus.IN_PROGRESS,
        detail="",
        requested_by="admin",
        created=now,
        updated=now,
    )


def test_a_pass_of_the_copy_scans_the_target_once_not_once_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = MaildirStore(tmp_path / "source")
    home = Home(tmp_path / "target")
    mover = Mover(NO_DIRECTORY, home, PeerHosts(NO_DIRECTORY, home))
    guid = uuid.uuid4()
    request = move_request(guid)
    fetched: list[str] = []

    async def from_the_source(
        _request: MoveRequest, method: str, path: str
    ) -> httpx.Response | None:
        assert method == "GET"
        name = path.removeprefix("/files/")
        fetched.append(name)
        try:
            return httpx.Response(200, content=read_file(source.mailbox_path(guid), name))
        except FileNotFoundError:
            return None

    monkeypatch.setattr(mover, "_call", from_the_source)

    async def body() -> None:
        await source.create_mailbox(guid)
        for n in range(25):
            await source.deliver(guid, f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
        listed = manifest(source.mailbox_path(guid))
        # A file listed twice (renamed from new/ to cur/ during the listing) is copied once.
        twice = ManifestEntry(f"cur/{listed[0].base}:2,S", listed[0].size)
        (source.mailbox_path(guid) / twice.path).hardlink_to(
            source.mailbox_path(guid) / listed[0].path
        )
        await mover._store.create_mailbox(guid)
        target = mover._store.mailbox_path(guid)
        scanned = counting_manifest(monkeypatch)
        assert await mover._sync(request, [*listed, twice], prune_extra=True) == 25
        assert scanned == [target, target]  # one scan to copy, one to prune
        assert manifest(target) == listed
        assert fetched == [entry.path for entry in listed]
        # Again: nothing to copy, and still one scan for it.
        scanned.clear()
        assert await mover._sync(request, listed, prune_extra=False) == 0
        assert scanned == [target]

    asyncio.run(body())


def test_the_source_creates_a_maildrop_held_here_only_when_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MaildirStore(tmp_path)
    source = SourceMaildrops(store)
    guid = uuid.uuid4()
    created: list[uuid.UUID] = []
    real_create = store.create_mailbox

    async def create(mailbox: uuid.UUID) -> None:
        created.append(mailbox)
        await real_create(mailbox)

    monkeypatch.setattr(store, "create_mailbox", create)

    async def body() -> None:
        # Not held here and no maildrop: the copy here is removed already.
        with pytest.raises(MailboxNotFound):
            await source.manifest(guid, held_here=False)
        with pytest.raises(MailboxNotFound):
            await source.freeze(guid, held_here=False)
        assert created == []
        # Held here but never used: an empty maildrop, made once.
        assert await source.manifest(guid, held_here=True) == []
        assert created == [guid]
        await store.deliver(guid, b"Subject: x\r\n\r\nx\r\n")
        for _ in range(3):
            assert len(await source.manifest(guid, held_here=True)) == 1
        assert created == [guid]
        # Removed meanwhile (by anyone): made again when next needed.
        await store.delete_mailbox(guid)
        assert await source.manifest(guid, held_here=True) == []
        assert created == [guid, guid]
        await store.delete_mailbox(guid)
        assert await source.freeze(guid, held_here=True) == []
        assert created == [guid, guid, guid]
        with pytest.raises(MailboxLocked):
            await store.open(guid)  # frozen
        assert await source.freeze(guid, held_here=True) == []  # a renewal
        source.thaw(guid)
        assert await source.freeze(guid, held_here=True) == []
        assert created == [guid, guid, guid]
        # Moved away and removed: not made again.
        await source.remove(guid)
        with pytest.raises(MailboxNotFound):
            await source.manifest(guid, held_here=False)
        assert created == [guid, guid, guid]

    asyncio.run(body())
