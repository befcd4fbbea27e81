"""The store's side of a mailbox move (``popgate.store._move``): copies keep every UID and
order, a repeated copy adds nothing, a freeze waits for deliveries and keeps sessions and
deliveries out, and a delivery held back by a freeze gives up with a clear error."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import pytest

from popgate.store import MailboxLocked, MaildirStore, StoreError
from popgate.store._move import (
    freeze,
    install_file,
    install_index,
    manifest,
    prune,
    read_file,
    read_index,
)


def make_store(root: Path) -> MaildirStore:
    return MaildirStore(root)


async def filled(store: MaildirStore, guid: uuid.UUID, count: int) -> list[str]:
    await store.create_mailbox(guid)
    return [
        await store.deliver(guid, f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
        for n in range(count)
    ]


async def listing(store: MaildirStore, guid: uuid.UUID) -> list[tuple[str, int]]:
    async with await store.open(guid) as session:
        return [(message.uid, message.size) for message in session.messages]


def copy_all(source: MaildirStore, target: MaildirStore, guid: uuid.UUID) -> int:
    source_dir, target_dir = source.mailbox_path(guid), target.mailbox_path(guid)
    copied = 0
    for entry in manifest(source_dir):
        copied += install_file(target_dir, entry.path, read_file(source_dir, entry.path))
    return copied


def test_a_copy_keeps_every_uid_size_and_the_order(tmp_path: Path) -> None:
    source, target = make_store(tmp_path / "a"), make_store(tmp_path / "b")
    guid = uuid.uuid4()

    async def body() -> None:
        await filled(source, guid, 5)
        expected = await listing(source, guid)  # a session wrote the source's index
        await target.create_mailbox(guid)
        assert copy_all(source, target, guid) == 5
        index = read_index(source.mailbox_path(guid))
        assert index is not None
        install_index(target.mailbox_path(guid), index)
        assert await listing(target, guid) == expected

    asyncio.run(body())


def test_copying_again_adds_nothing_and_prune_drops_what_the_source_deleted(
    tmp_path: Path,
) -> None:
    source, target = make_store(tmp_path / "a"), make_store(tmp_path / "b")
    guid = uuid.uuid4()

    async def body() -> None:
        uids = await filled(source, guid, 4)
        await target.create_mailbox(guid)
        copy_all(source, target, guid)
        # A client deletes one message at the source, and one more arrives there.
        async with await source.open(guid) as session:
            await session.commit([uids[1]])
        late = await source.deliver(guid, b"Subject: late\r\n\r\nlate\r\n")
        assert copy_all(source, target, guid) == 1  # only the late one
        keep = {entry.base for entry in manifest(source.mailbox_path(guid))}
        removed = prune(target.mailbox_path(guid), keep)
        assert len(removed) == 1
        assert [uid for uid, _ in await listing(target, guid)] == [
            uids[0], uids[2], uids[3], late,
        ]  # fmt: skip

    asyncio.run(body())


def test_install_refuses_paths_outside_the_maildrop(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    guid = uuid.uuid4()
    asyncio.run(store.create_mailbox(guid))
    for path in ("../escape", "tmp/x", "new/../../x", "cur/.hidden", "new/", "new/a/b"):
        with pytest.raises(ValueError, match="is not a message file"):
            install_file(store.mailbox_path(guid), path, b"x")


def test_a_freeze_keeps_sessions_out_and_is_refused_during_a_session(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    guid = uuid.uuid4()

    async def body() -> None:
        await filled(store, guid, 1)
        session = await store.open(guid)
        with pytest.raises(MailboxLocked):
            freeze(store.root, guid, timeout=1)
        await session.close()
        held = freeze(store.root, guid, timeout=1)
        with pytest.raises(MailboxLocked):
            await store.open(guid)
        held.release()
        held.release()  # a second release is harmless
        await (await store.open(guid)).close()

    asyncio.run(body())


def test_a_freeze_waits_for_a_delivery_under_way(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    guid = uuid.uuid4()
    frozen_at: list[float] = []

    def freeze_and_note() -> None:
        held = freeze(store.root, guid, timeout=10)
        frozen_at.append(time.monotonic())
        held.release()

    async def body() -> None:
        await store.create_mailbox(guid)
        async with store.delivery_guard(guid):
            thread = threading.Thread(target=freeze_and_note)
            thread.start()
            await asyncio.sleep(0.3)
            assert not frozen_at  # still delivering
            released = time.monotonic()
        await asyncio.to_thread(thread.join, 10)
        assert frozen_at
        assert frozen_at[0] >= released

    asyncio.run(body())


def test_a_delivery_held_back_by_a_freeze_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    guid = uuid.uuid4()

    async def body() -> None:
        await store.create_mailbox(guid)
        held = freeze(store.root, guid, timeout=1)
        try:
            with pytest.raises(StoreError, match="being moved; try again later"):
                async with store.delivery_guard(guid, wait=0.3):
                    pass
        finally:
            held.release()
        async with store.delivery_guard(guid, wait=0.3):
            await store.deliver(guid, b"Subject: after\r\n\r\nx\r\n")

    asyncio.run(body())
