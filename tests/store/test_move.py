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
from popgate.store import _move as store_move
from popgate.store._move import (
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


def test_removing_what_the_source_deleted_spares_a_message_delivered_meanwhile(
    tmp_path: Path,
) -> None:
    """After the switch the target takes deliveries while the move removes the messages the
    source deleted late: only those go, never one that arrived in between."""
    store = make_store(tmp_path)
    guid = uuid.uuid4()

    async def body() -> None:
        uids = await filled(store, guid, 3)
        arrived = await store.deliver(guid, b"Subject: new\r\n\r\nnew\r\n")
        removed = remove_bases(store.mailbox_path(guid), {uids[1]})
        assert len(removed) == 1
        assert [uid for uid, _ in await listing(store, guid)] == [uids[0], uids[2], arrived]

    asyncio.run(body())


def counting_manifest(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Count the scans of a maildrop (every call of ``store._move.manifest``)."""
    scanned: list[Path] = []
    real = store_move.manifest

    def spy(maildir: Path) -> list[ManifestEntry]:
        scanned.append(maildir)
        return real(maildir)

    monkeypatch.setattr(store_move, "manifest", spy)
    return scanned


def test_a_copy_with_the_present_set_scans_the_target_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = make_store(tmp_path / "a"), make_store(tmp_path / "b")
    guid = uuid.uuid4()

    async def body() -> None:
        uids = await filled(source, guid, 3)
        await target.create_mailbox(guid)
        source_dir, target_dir = source.mailbox_path(guid), target.mailbox_path(guid)
        # One file is there already: the copy skips it, by the set alone.
        first = manifest(source_dir)[0]
        assert install_file(target_dir, first.path, read_file(source_dir, first.path))
        more = [await source.deliver(guid, f"Subject: m{n}\r\n\r\nm\r\n".encode())
                for n in range(20)]  # fmt: skip
        entries = manifest(source_dir)
        scanned = counting_manifest(monkeypatch)
        present = present_bases(target_dir)
        copied = sum(
            install_file(target_dir, entry.path, read_file(source_dir, entry.path), present)
            for entry in entries
        )
        assert copied == len(entries) - 1
        assert scanned == [target_dir]  # once for the whole copy, not once per file
        assert present == {entry.base for entry in entries} == present_bases(target_dir)
        assert [uid for uid, _ in await listing(target, guid)] == [*uids, *more]

    asyncio.run(body())


def test_the_present_set_refuses_a_base_name_under_another_name(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    guid = uuid.uuid4()
    asyncio.run(store.create_mailbox(guid))
    maildir = store.mailbox_path(guid)
    present: set[str] = set()
    assert install_file(maildir, "new/1700000000.M1P1Q1.src", b"Subject: a\r\n\r\na\r\n", present)
    assert present == {"1700000000.M1P1Q1.src"}
    # The same message as a session on the source renamed it meanwhile: the same UID.
    assert not install_file(maildir, "cur/1700000000.M1P1Q1.src:2,S", b"x", present)
    assert not install_file(maildir, "cur/1700000000.M1P1Q1.src:2,S", b"x")  # by a scan too
    assert [entry.path for entry in manifest(maildir)] == ["new/1700000000.M1P1Q1.src"]


def test_install_refuses_paths_outside_the_maildrop(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    guid = uuid.uuid4()
    asyncio.run(store.create_mailbox(guid))
    for path in ("../escape", "tmp/x", "new/../../x", "cur/.hidden", "new/", "new/a/b"):
        with pytest.raises(ValueError, match="is not a message file"):
            install_file(store.mailbox_path(guid), path, b"x")
        with pytest.raises(ValueError, match="is not a message file"):
            install_file(store.mailbox_path(guid), path, b"x", set())


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
