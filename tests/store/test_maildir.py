"""Maildir-specific behaviour of :class:`~popgate.store.MaildirStore`.

The generic behaviour is in ``test_contract.py``. This file covers the on-disk format:
file names, the index, files that other programs put in the Maildir, lock recovery after
``kill -9``, large messages, and property tests of the streaming size and TOP code.
"""

from __future__ import annotations

import asyncio
import gc
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import popgate
from popgate.protocol._message import crlf_size, to_crlf, top_of_message
from popgate.store import (
    MailboxLocked,
    MailboxNotFound,
    MaildirStore,
    MessageGone,
    MessageInfo,
    StoreError,
    _maildir,
    uid_for_base_name,
)
from popgate.store._maildir import _crlf_pieces, crlf_size_of_stream, top_of_stream

OUR_NAME = re.compile(r"(\d+)\.M(\d+)P(\d+)Q(\d+)\.(?P<host>.+),S=(?P<s>\d+),W=(?P<w>\d+)")
UID_FORMAT = re.compile(r"[\x21-\x7e]{1,70}")

# Octets that matter to CRLF conversion and TOP, so hypothesis hits the edge cases often.
mail_octets = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b".", b"\x00", b"\xff", b": "]), max_size=60
).map(b"".join)
any_bytes = st.one_of(st.binary(max_size=400), mail_octets)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MaildirStore:
    """A Maildir store whose host name is short and known."""
    monkeypatch.setattr(socket, "gethostname", lambda: "mx.example.org")
    return MaildirStore(tmp_path / "mail")


@pytest.fixture
def guid() -> uuid.UUID:
    """A fresh mailbox id."""
    return uuid.uuid4()


@pytest.fixture
def mailbox(store: MaildirStore, guid: uuid.UUID) -> Path:
    """The directory of an existing, empty mailbox."""
    asyncio.run(store.create_mailbox(guid))
    return store.mailbox_path(guid)


def snapshot(store: MaildirStore, guid: uuid.UUID) -> list[MessageInfo]:
    async def scenario() -> list[MessageInfo]:
        async with await store.open(guid) as session:
            return list(session.messages)

    return asyncio.run(scenario())


def read_all(store: MaildirStore, guid: uuid.UUID) -> dict[str, bytes]:
    async def scenario() -> dict[str, bytes]:
        async with await store.open(guid) as session:
            return {info.uid: await session.read(info.uid) for info in session.messages}

    return asyncio.run(scenario())


def write_foreign(path: Path, content: bytes, mtime: float | None = None) -> None:
    """Put a message where another program (an MDA, a mail client) would."""
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def forbid_body_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> int:
        raise AssertionError("a message body was read to compute its size")

    monkeypatch.setattr(_maildir, "crlf_size_of_stream", fail)


# -- layout and names ----------------------------------------------------------------------


def test_mailbox_is_a_maildir_named_by_guid(store: MaildirStore, guid: uuid.UUID) -> None:
    asyncio.run(store.create_mailbox(guid))
    mailbox = store.root / str(guid)
    assert sorted(p.name for p in mailbox.iterdir()) == ["cur", "new", "tmp"]
    assert [p.name for p in store.root.iterdir()] == [str(guid)]  # no staging left behind


def test_mailbox_ids_must_be_uuids(store: MaildirStore) -> None:
    with pytest.raises(TypeError):
        store.mailbox_path("../../etc")  # type: ignore[arg-type]


def test_delivery_writes_raw_content_under_a_maildir_name(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    content = b"Subject: x\n\nno final newline"
    uid = asyncio.run(store.deliver(guid, content))
    (path,) = (mailbox / "new").iterdir()
    match = OUR_NAME.fullmatch(path.name)
    assert match is not None
    assert match["host"] == "mx.example.org"
    assert int(match["s"]) == len(content)
    assert int(match["w"]) == len(content) + 2  # two LFs became CRLF; W= omits the end fix
    assert path.read_bytes() == content
    assert list((mailbox / "tmp").iterdir()) == []
    assert uid == path.name  # short names are their own UID
    assert snapshot(store, guid) == [MessageInfo(uid, crlf_size(content))]


def test_host_name_is_escaped_in_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guid: uuid.UUID
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "a/b:c,d\\e f")
    store = MaildirStore(tmp_path)

    async def scenario() -> str:
        await store.create_mailbox(guid)
        return await store.deliver(guid, b"x\n")

    uid = asyncio.run(scenario())
    (path,) = (store.mailbox_path(guid) / "new").iterdir()
    assert ".a\\057b\\072c\\054d\\134e\\040f,S=2,W=3" in path.name
    assert uid == path.name
    assert UID_FORMAT.fullmatch(uid)


def test_long_names_get_hashed_uids_that_survive_reindexing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guid: uuid.UUID
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 80)
    store = MaildirStore(tmp_path)

    async def scenario() -> str:
        await store.create_mailbox(guid)
        return await store.deliver(guid, b"x\n")

    uid = asyncio.run(scenario())
    assert re.fullmatch(r":[0-9a-f]{32}", uid)
    assert [info.uid for info in snapshot(store, guid)] == [uid]
    (store.mailbox_path(guid) / "popgate-uidlist").unlink()
    assert [info.uid for info in snapshot(store, guid)] == [uid]


def test_uid_for_base_name() -> None:
    assert uid_for_base_name("1700000000.M1P2Q3.host,S=1,W=1") == "1700000000.M1P2Q3.host,S=1,W=1"
    assert uid_for_base_name("x" * 70) == "x" * 70
    hashed = [uid_for_base_name(name) for name in ("x" * 71, "", "a b", "caf\u00e9", "a\nb")]
    assert all(re.fullmatch(r":[0-9a-f]{32}", uid) for uid in hashed)
    assert len(set(hashed)) == len(hashed)
    assert uid_for_base_name("x" * 71) == uid_for_base_name("x" * 71)  # deterministic


# -- files written by other programs --------------------------------------------------------


def test_foreign_files_in_new_and_cur_are_served(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    first = b"Subject: first\n\nbody\n.\n"
    second = b"Subject: second\n\nflagged, no final newline"
    third = b"Subject: third\r\n\r\nCRLF already\r\n"
    write_foreign(mailbox / "new" / "1700000000.M5P9.other-host", first)
    write_foreign(mailbox / "cur" / "1700000001.M0P9.other-host:2,S", second)
    write_foreign(mailbox / "cur" / "no-timestamp:2,RS", third, mtime=1700000002)
    # None of these are messages.
    write_foreign(mailbox / "tmp" / "1600000000.M0P1.half-written", b"partial")
    write_foreign(mailbox / "new" / ".hidden", b"not mail\n")
    (mailbox / "cur" / "a-directory").mkdir()

    assert snapshot(store, guid) == [
        MessageInfo("1700000000.M5P9.other-host", crlf_size(first)),
        MessageInfo("1700000001.M0P9.other-host", crlf_size(second)),
        MessageInfo("no-timestamp", crlf_size(third)),
    ]
    assert list(read_all(store, guid).values()) == [to_crlf(first), to_crlf(second), third]


def test_foreign_sizes_are_computed_once_and_cached_in_the_index(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"Subject: lf\n\none\ntwo\n"
    write_foreign(mailbox / "new" / "1700000000.foreign.host", content)
    assert asyncio.run(store.stats(guid)) == (1, crlf_size(content))
    index = (mailbox / "popgate-uidlist").read_text().splitlines()
    assert index == [
        "popgate-uidlist 1",
        f"1700000000.foreign.host {crlf_size(content)} 1700000000.foreign.host",
    ]
    forbid_body_reads(monkeypatch)
    assert snapshot(store, guid) == [MessageInfo("1700000000.foreign.host", crlf_size(content))]


def test_names_with_w_size_are_indexed_without_reading_bodies(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"Subject: dovecot\n\nbody without final newline"
    name = f"1700000000.M1P2.dovecot,S={len(content)},W={len(content) + 2}"
    write_foreign(mailbox / "cur" / f"{name}:2,S", content)
    forbid_body_reads(monkeypatch)
    assert snapshot(store, guid) == [MessageInfo(name, crlf_size(content))]
    assert read_all(store, guid) == {name: to_crlf(content)}


def test_moves_and_flag_changes_keep_the_uid(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    content = b"Subject: move me\n\nbody\n"
    uid = asyncio.run(store.deliver(guid, content))
    before = snapshot(store, guid)
    (path,) = (mailbox / "new").iterdir()
    moved = mailbox / "cur" / f"{path.name}:2,S"
    path.rename(moved)
    assert snapshot(store, guid) == before

    async def scenario() -> list[str]:
        session = await store.open(guid)
        moved.rename(mailbox / "cur" / f"{path.name}:2,RS")  # flagged during the session
        assert await session.read(uid) == to_crlf(content)
        return await session.commit([uid])

    assert asyncio.run(scenario()) == []
    assert list((mailbox / "cur").iterdir()) == []


def test_duplicate_base_names_are_one_message_and_commit_removes_both(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    uid = asyncio.run(store.deliver(guid, b"x\n"))
    (path,) = (mailbox / "new").iterdir()
    shutil.copy(path, mailbox / "cur" / f"{path.name}:2,S")
    assert [info.uid for info in snapshot(store, guid)] == [uid]

    async def scenario() -> list[str]:
        session = await store.open(guid)
        return await session.commit([uid])

    assert asyncio.run(scenario()) == []
    assert list((mailbox / "new").iterdir()) == list((mailbox / "cur").iterdir()) == []


def test_order_of_a_late_foreign_file_with_an_old_timestamp(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    first = asyncio.run(store.deliver(guid, b"1\n"))
    second = asyncio.run(store.deliver(guid, b"2\n"))
    assert [info.uid for info in snapshot(store, guid)] == [first, second]
    write_foreign(mailbox / "new" / "1000000000.imported.host", b"old\n")
    # Listed in the order the index first saw it ...
    assert [info.uid for info in snapshot(store, guid)] == [
        first,
        second,
        "1000000000.imported.host",
    ]
    # ... and by name timestamp once the index is rebuilt; the UIDs do not change.
    (mailbox / "popgate-uidlist").unlink()
    assert [info.uid for info in snapshot(store, guid)] == [
        "1000000000.imported.host",
        first,
        second,
    ]


# -- the index --------------------------------------------------------------------------------


def test_damaged_index_lines_are_rebuilt(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    for n in range(3):
        asyncio.run(store.deliver(guid, f"message {n}\n".encode()))
    good = snapshot(store, guid)
    index = mailbox / "popgate-uidlist"
    lines = index.read_text().splitlines()
    lines[1] = "wrong-uid 5 " + lines[1].split(" ", 2)[2]  # UID does not match the name
    lines[2] = "garbage"
    lines[3] = lines[3].replace(" ", " x", 1)  # size not a number
    index.write_text("\n".join(lines) + "\n")
    assert snapshot(store, guid) == good
    index.write_text("some-other-format 9\n")
    assert snapshot(store, guid) == good


def test_index_escapes_awkward_file_names(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["1700000000.a\nb", "1700000001.back\\slash\\n", "1700000002.sp ace", "1700000003.\r"]
    for name in names:
        write_foreign(mailbox / "new" / name, b"x\n")
    first = snapshot(store, guid)
    assert [info.uid for info in first] == [uid_for_base_name(name) for name in names]
    assert all(UID_FORMAT.fullmatch(info.uid) for info in first)
    forbid_body_reads(monkeypatch)  # every line parsed back from the index
    assert snapshot(store, guid) == first


def test_index_is_refreshed_without_the_maildrop_lock(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    async def scenario() -> None:
        async with await store.open(guid):
            write_foreign(mailbox / "new" / "1700000000.foreign.host", b"a\nb\n")
            assert await store.stats(guid) == (1, 6)
        assert "1700000000.foreign.host" in (mailbox / "popgate-uidlist").read_text()

    asyncio.run(scenario())


# -- sessions -------------------------------------------------------------------------------


def test_a_message_deleted_by_another_program(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    uid = asyncio.run(store.deliver(guid, b"x\n"))

    async def scenario() -> list[str]:
        session = await store.open(guid)
        for path in (mailbox / "new").iterdir():
            path.unlink()
        with pytest.raises(MessageGone):
            await session.read(uid)
        with pytest.raises(MessageGone):
            await session.read_top(uid, 0)
        return await session.commit([uid])  # already gone counts as removed

    assert asyncio.run(scenario()) == []


def test_commit_reports_uids_it_could_not_remove(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = asyncio.run(store.deliver(guid, b"kept\n"))
    removed = asyncio.run(store.deliver(guid, b"removed\n"))
    real_unlink = os.unlink

    def unlink(path: str | os.PathLike[str]) -> None:
        if Path(path).name == kept:
            raise PermissionError(13, "denied", str(path))
        real_unlink(path)

    async def scenario() -> list[str]:
        session = await store.open(guid)
        monkeypatch.setattr(os, "unlink", unlink)
        return await session.commit([kept, removed, "not-in-the-snapshot"])

    assert asyncio.run(scenario()) == [kept, "not-in-the-snapshot"]
    monkeypatch.undo()
    assert [info.uid for info in snapshot(store, guid)] == [kept]  # and the lock is free


def test_closed_sessions_refuse_to_read(store: MaildirStore, guid: uuid.UUID) -> None:
    async def scenario() -> None:
        await store.create_mailbox(guid)
        message = await store.deliver(guid, b"x\n")
        session = await store.open(guid)
        await session.close()
        assert session.closed
        with pytest.raises(StoreError):
            await session.read(message)
        with pytest.raises(StoreError):
            await session.commit([message])
        committed = await store.open(guid)
        await committed.commit([])
        with pytest.raises(StoreError):
            await committed.read_top(message, 1)

    asyncio.run(scenario())
    assert len(snapshot(store, guid)) == 1


def test_garbage_collected_session_releases_the_lock(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    asyncio.run(store.deliver(guid, b"x\n"))
    session = asyncio.run(store.open(guid))
    del session
    gc.collect()
    assert len(snapshot(store, guid)) == 1  # nothing deleted, lock free


def test_cancelled_commit_finishes_and_releases_the_lock(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    uid = asyncio.run(store.deliver(guid, b"x\n"))

    async def scenario() -> None:
        session = await store.open(guid)
        task = asyncio.create_task(session.commit([uid]))
        await asyncio.sleep(0)  # the removal is now running in a worker thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(500):
            try:
                again = await store.open(guid)
            except MailboxLocked:
                await asyncio.sleep(0.01)
                continue
            assert list(again.messages) == []
            await again.close()
            return
        pytest.fail("the lock was never released")

    asyncio.run(scenario())


def test_deleting_a_mailbox_under_an_open_session(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    uid = asyncio.run(store.deliver(guid, b"x\n"))

    async def scenario() -> None:
        session = await store.open(guid)
        await store.delete_mailbox(guid)
        with pytest.raises(MessageGone):
            await session.read(uid)
        await session.close()
        with pytest.raises(MailboxNotFound):
            await store.open(guid)

    asyncio.run(scenario())
    assert list(store.root.iterdir()) == []


LOCK_HOLDER = textwrap.dedent(
    """
    import asyncio, pathlib, sys, time, uuid
    from popgate.store import MaildirStore

    async def main() -> None:
        store = MaildirStore(pathlib.Path(sys.argv[1]))
        session = await store.open(uuid.UUID(sys.argv[2]))
        print("locked", flush=True)
        time.sleep(120)

    asyncio.run(main())
    """
)


def test_lock_of_a_killed_process_is_released(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(popgate.__file__).resolve().parents[1])}
    with (tmp_path / "stderr").open("wb") as stderr:
        holder = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(store.root), str(guid)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n", (tmp_path / "stderr").read_text()
        with pytest.raises(MailboxLocked):
            asyncio.run(store.open(guid))
        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert snapshot(store, guid) == []


# -- large messages and streaming -------------------------------------------------------------


class CountingStream(io.BytesIO):
    """A stream that records how many octets were read from it."""

    consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


def test_large_message(store: MaildirStore, guid: uuid.UUID, mailbox: Path) -> None:
    header = b"Subject: big\nFrom: a@example.org\n\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghij."
    content = header + (line + b"\n") * 350_000
    assert len(content) > 20_000_000

    async def scenario() -> tuple[bytes, bytes, MessageInfo]:
        uid = await store.deliver(guid, content)
        async with await store.open(guid) as session:
            return await session.read(uid), await session.read_top(uid, 2), session.messages[0]

    data, top, info = asyncio.run(scenario())
    assert len(data) == info.size == crlf_size(content)
    assert data == to_crlf(content)
    assert top == to_crlf(header) + (line + b"\r\n") * 2


def test_top_reads_only_the_head_of_a_large_message() -> None:
    stream = CountingStream(b"Subject: big\n\n" + b"line\n" * 5_000_000)
    assert top_of_stream(stream, 3) == b"Subject: big\r\n\r\n" + b"line\r\n" * 3
    assert stream.consumed <= 2 << 16  # the chunk holding the head, plus one of look-ahead


@settings(max_examples=300, deadline=None)
@given(data=any_bytes, chunk_size=st.integers(1, 9), body_lines=st.integers(0, 6))
def test_streaming_matches_the_whole_message_helpers(
    data: bytes, chunk_size: int, body_lines: int
) -> None:
    assert crlf_size_of_stream(io.BytesIO(data), chunk_size) == crlf_size(data)
    assert b"".join(_crlf_pieces(io.BytesIO(data), chunk_size)) == to_crlf(data)
    assert top_of_stream(io.BytesIO(data), body_lines, chunk_size) == top_of_message(
        to_crlf(data), body_lines
    )


@settings(max_examples=60, deadline=None)
@given(content=any_bytes, body_lines=st.integers(0, 4))
def test_size_equals_read_length_for_arbitrary_bytes(content: bytes, body_lines: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = MaildirStore(Path(directory))
        guid = uuid.uuid4()

        async def scenario() -> None:
            await store.create_mailbox(guid)
            ours = await store.deliver(guid, content)
            # The same octets as a foreign file: no W= in the name, so the size is computed.
            foreign = store.mailbox_path(guid) / "cur" / "9999999999.foreign:2,S"
            foreign.write_bytes(content)
            async with await store.open(guid) as session:
                assert [info.uid for info in session.messages] == [ours, "9999999999.foreign"]
                for info in session.messages:
                    data = await session.read(info.uid)
                    assert info.size == len(data) == crlf_size(content)
                    assert data == to_crlf(content)
                    top = await session.read_top(info.uid, body_lines)
                    assert top == top_of_message(data, body_lines)

        asyncio.run(scenario())


# -- a large maildrop -------------------------------------------------------------------------

LARGE_MAILDROP = 20_000


def test_a_large_maildrop_is_listed_in_order_with_exact_totals(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path
) -> None:
    """20,000 messages in our delivery format: right count, totals and order.

    How fast this is lives in bench/store.py, not in a timed test.
    """
    new = mailbox / "new"
    content = b"Subject: tiny\n\nx\n"
    for n in range(LARGE_MAILDROP):
        name = f"{1700000000 + n // 1000}.M{n % 1000}P1Q{n}.mx,S={len(content)},W=20"
        (new / name).write_bytes(content)
    assert asyncio.run(store.stats(guid)) == (LARGE_MAILDROP, 20 * LARGE_MAILDROP)
    messages = snapshot(store, guid)
    assert len(messages) == LARGE_MAILDROP
    assert asyncio.run(store.stats(guid)) == (LARGE_MAILDROP, 20 * LARGE_MAILDROP)
    assert messages[0].uid.startswith("1700000000.M0P1Q0.")
    assert messages[-1].uid.startswith(f"{1700000000 + (LARGE_MAILDROP - 1) // 1000}.")


# -- snapshots kept between sessions -------------------------------------------------------


def age(mailbox: Path, seconds: float = 60) -> None:
    """Make new/, cur/ and the index look last changed ``seconds`` ago (a quiet maildrop)."""
    when = time.time() - seconds
    for path in (mailbox / "new", mailbox / "cur", mailbox / _maildir.INDEX):
        os.utime(path, (when, when))


def counting_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every refresh of an index against the files."""
    refreshed: list[Path] = []
    real = _maildir._refresh

    def spy(mailbox: Path) -> tuple[list[Any], dict[str, list[str]]]:
        refreshed.append(mailbox)
        return real(mailbox)

    monkeypatch.setattr(_maildir, "_refresh", spy)
    return refreshed


@pytest.fixture
def big(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """A maildrop counted as big (3 messages and up here), listed once, index written."""
    monkeypatch.setattr(_maildir, "SNAPSHOT_CACHE_MIN_MESSAGES", 3)
    uids = [asyncio.run(store.deliver(guid, b"Subject: %d\n\nbody\n" % n)) for n in range(4)]
    snapshot(store, guid)
    return uids


def test_an_unchanged_big_maildrop_is_listed_from_memory(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, big: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    age(mailbox)
    first = snapshot(store, guid)  # refreshes, and keeps the snapshot: the folders are quiet
    refreshed = counting_refreshes(monkeypatch)
    assert snapshot(store, guid) == first == snapshot(store, guid)
    assert [info.uid for info in first] == big
    assert refreshed == []
    # Another store (a restarted service) starts from the files and the index.
    assert snapshot(MaildirStore(store.root), guid) == first
    assert refreshed == [mailbox]


def test_a_snapshot_is_not_kept_while_the_folders_change(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, big: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    del big
    refreshed = counting_refreshes(monkeypatch)
    snapshot(store, guid)
    snapshot(store, guid)  # the index was just written: within the same tick as a change
    assert len(refreshed) == 2


def test_deliveries_deletions_and_moves_after_a_kept_snapshot_are_seen(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, big: list[str],
) -> None:  # fmt: skip
    age(mailbox)
    snapshot(store, guid)  # kept
    late = asyncio.run(store.deliver(guid, b"Subject: late\n\nbody\n"))
    assert [info.uid for info in snapshot(store, guid)] == [*big, late]

    snapshot(store, guid)
    age(mailbox)
    snapshot(store, guid)  # kept again

    async def delete_first() -> list[str]:
        async with await store.open(guid) as session:
            return await session.commit([big[0]])

    assert asyncio.run(delete_first()) == []
    assert [info.uid for info in snapshot(store, guid)] == [*big[1:], late]

    snapshot(store, guid)
    age(mailbox)
    snapshot(store, guid)  # kept again
    # A mail client marks a message seen: new/ -> cur/ with flags.
    (moving,) = [path for path in (mailbox / "new").iterdir() if path.name.startswith(late)]
    moving.rename(mailbox / "cur" / f"{moving.name}:2,S")
    contents = read_all(store, guid)
    assert list(contents) == [*big[1:], late]
    assert contents[late] == b"Subject: late\r\n\r\nbody\r\n"


def test_a_delivery_during_the_refresh_is_never_left_out(
    store: MaildirStore, guid: uuid.UUID, mailbox: Path, big: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    age(mailbox)
    arrived: list[str] = []
    real = _maildir._refresh

    def refresh_then_deliver(path: Path) -> tuple[list[Any], dict[str, list[str]]]:
        listed = real(path)
        if not arrived:  # a delivery lands after the scan, before the snapshot is kept
            arrived.append(asyncio.run(store.deliver(guid, b"Subject: racing\n\nbody\n")))
        return listed

    monkeypatch.setattr(_maildir, "_refresh", refresh_then_deliver)
    assert [info.uid for info in snapshot(store, guid)] == big
    assert [info.uid for info in snapshot(store, guid)] == [*big, *arrived]
