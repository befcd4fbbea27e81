"""The contract every :class:`~popgate.store.MailStore` implementation must pass.

The ``store``/``harness`` fixtures in ``conftest.py`` run each test once per implementation.
References are RFC 1939 and docs/pop3-conformance items 10, 13, 14 and 21-35.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from popgate.protocol._message import crlf_size, to_crlf, top_of_message
from popgate.store import (
    MailboxLocked,
    MailboxNotFound,
    MailboxSession,
    MailStore,
    MessageInfo,
)

from .conftest import StoreHarness

UID_FORMAT = re.compile(r"[\x21-\x7e]{1,70}")  # RFC 1939 section 7, UIDL

MESSAGES: dict[str, bytes] = {
    "lf": b"Subject: lf\n\nline one\nline two\n",
    "crlf": b"Subject: crlf\r\n\r\nline one\r\nline two\r\n",
    "mixed": b"Subject: mixed\r\n\nline one\nline two\r\n",
    "no-final-newline": b"Subject: x\n\nlast line without newline",
    "nul": b"Subject: nul\n\nbefore\x00after\n\x00\n",
    "8bit": "Subject: \u00e9t\u00e9\n\nna\u00efve \u20ac\n".encode() + b"\xff\xfe\x80\n",
    "lone-dots": b"Subject: dots\n\n.\n..\n.x\n.\r\n",
    "empty": b"",
    "only-newlines": b"\n\n\n",
    "bare-cr": b"Subject: cr\r\rbody\rmore\r",
    "cr-then-crlf": b"a\r\r\nb\r\n\r\n\r",
    "headers-only": b"Subject: no body\nFrom: a@example.org\n",
    "long-line": b"Subject: long\n\n" + b"x" * 5000 + b"\n",
}


async def deliver_all(store: MailStore, guid: uuid.UUID, contents: list[bytes]) -> list[str]:
    await store.create_mailbox(guid)
    return [await store.deliver(guid, content) for content in contents]


async def snapshot(store: MailStore, guid: uuid.UUID) -> list[MessageInfo]:
    session = await store.open(guid)
    try:
        return list(session.messages)
    finally:
        await session.close()


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_read_returns_crlf_form_of_exactly_size_octets(
    store: MailStore, guid: uuid.UUID, name: str
) -> None:
    content = MESSAGES[name]

    async def scenario() -> None:
        (uid,) = await deliver_all(store, guid, [content])
        session = await store.open(guid)
        try:
            assert list(session.messages) == [MessageInfo(uid, crlf_size(content))]
            data = await session.read(uid)
        finally:
            await session.close()
        assert data == to_crlf(content)
        assert len(data) == session.messages[0].size
        assert await store.stats(guid) == (1, len(data))

    asyncio.run(scenario())


@pytest.mark.parametrize("name", sorted(MESSAGES))
@pytest.mark.parametrize("body_lines", [0, 1, 2, 1000])
def test_read_top_matches_rfc_1939_top(
    store: MailStore, guid: uuid.UUID, name: str, body_lines: int
) -> None:
    content = MESSAGES[name]

    async def scenario() -> None:
        (uid,) = await deliver_all(store, guid, [content])
        session = await store.open(guid)
        try:
            top = await session.read_top(uid, body_lines)
            with pytest.raises(ValueError, match="negative"):
                await session.read_top(uid, -1)
        finally:
            await session.close()
        assert top == top_of_message(to_crlf(content), body_lines)

    asyncio.run(scenario())


def test_read_top_cuts_header_and_body_lines(store: MailStore, guid: uuid.UUID) -> None:
    content = b"A: 1\nB: 2\n\nbody 1\nbody 2\nbody 3\n"

    async def scenario() -> list[bytes]:
        (uid,) = await deliver_all(store, guid, [content])
        session = await store.open(guid)
        try:
            return [await session.read_top(uid, n) for n in (0, 2, 3, 4)]
        finally:
            await session.close()

    header = b"A: 1\r\nB: 2\r\n\r\n"
    assert asyncio.run(scenario()) == [
        header,
        header + b"body 1\r\nbody 2\r\n",
        header + b"body 1\r\nbody 2\r\nbody 3\r\n",
        header + b"body 1\r\nbody 2\r\nbody 3\r\n",
    ]


def test_snapshot_is_in_delivery_order_with_unique_wellformed_uids(
    store: MailStore, guid: uuid.UUID
) -> None:
    contents = [f"Subject: {n}\n\n{'x' * n}\n".encode() for n in range(60)]

    async def scenario() -> tuple[list[str], list[MessageInfo]]:
        uids = await deliver_all(store, guid, contents)
        return uids, await snapshot(store, guid)

    uids, messages = asyncio.run(scenario())
    assert [info.uid for info in messages] == uids
    assert [info.size for info in messages] == [crlf_size(c) for c in contents]
    assert len(set(uids)) == len(uids)
    assert all(UID_FORMAT.fullmatch(uid) for uid in uids)


def test_concurrent_deliveries_all_arrive_with_distinct_uids(
    store: MailStore, guid: uuid.UUID
) -> None:
    contents = [f"Subject: {n}\n\nbody\n".encode() for n in range(40)]

    async def scenario() -> tuple[list[str], list[MessageInfo]]:
        await store.create_mailbox(guid)
        uids = await asyncio.gather(*(store.deliver(guid, c) for c in contents))
        return list(uids), await snapshot(store, guid)

    uids, messages = asyncio.run(scenario())
    assert len(set(uids)) == len(contents)
    assert sorted(info.uid for info in messages) == sorted(uids)


def test_uids_and_sizes_survive_reopen_restart_and_lost_caches(
    harness: StoreHarness, guid: uuid.UUID
) -> None:
    contents = [b"Subject: a\n\none\n", b"Subject: b\r\n\r\ntwo\r\n", b""]

    async def scenario() -> None:
        store = harness.make()
        await deliver_all(store, guid, contents)
        first = await snapshot(store, guid)
        assert await snapshot(store, guid) == first  # reopen, and no UPDATE in between
        assert await snapshot(harness.make(), guid) == first  # restart
        harness.drop_caches()
        assert await snapshot(harness.make(), guid) == first  # index rebuilt from scratch
        assert await harness.make().stats(guid) == (3, sum(map(crlf_size, contents)))

    asyncio.run(scenario())


def test_delivery_during_a_session_appears_only_at_the_next_open(
    store: MailStore, guid: uuid.UUID
) -> None:
    async def scenario() -> None:
        (first,) = await deliver_all(store, guid, [b"Subject: 1\n\n1\n"])
        session = await store.open(guid)
        try:
            second = await store.deliver(guid, b"Subject: 2\n\n2\n")
            assert [info.uid for info in session.messages] == [first]
            # stats() works without the maildrop lock and sees the new message.
            assert (await store.stats(guid))[0] == 2
        finally:
            await session.close()
        assert [info.uid for info in await snapshot(store, guid)] == [first, second]

    asyncio.run(scenario())


def test_second_open_is_refused_until_close(store: MailStore, guid: uuid.UUID) -> None:
    async def scenario() -> None:
        await store.create_mailbox(guid)
        first = await store.open(guid)
        with pytest.raises(MailboxLocked):
            await store.open(guid)  # same process, same store: still refused
        await first.close()
        second = await store.open(guid)
        await second.close()
        await second.close()  # idempotent

    asyncio.run(scenario())


def test_commit_releases_the_lock_and_close_after_commit_is_harmless(
    store: MailStore, guid: uuid.UUID
) -> None:
    async def scenario() -> None:
        await deliver_all(store, guid, [b"x\n"])
        session = await store.open(guid)
        assert await session.commit([]) == []
        await session.close()
        again = await store.open(guid)
        assert len(again.messages) == 1
        await again.close()

    asyncio.run(scenario())


def test_a_second_store_instance_also_sees_the_lock(harness: StoreHarness, guid: uuid.UUID) -> None:
    async def scenario() -> None:
        store = harness.make()
        await store.create_mailbox(guid)
        session = await store.open(guid)
        try:
            with pytest.raises(MailboxLocked):
                await harness.make().open(guid)
        finally:
            await session.close()

    asyncio.run(scenario())


def test_commit_deletes_exactly_the_given_uids(store: MailStore, guid: uuid.UUID) -> None:
    contents = [f"Subject: {n}\n\n{n}\n".encode() for n in range(6)]

    async def scenario() -> None:
        uids = await deliver_all(store, guid, contents)
        session = await store.open(guid)
        assert await session.commit([uids[1], uids[4], uids[5]]) == []
        remaining = await snapshot(store, guid)
        assert [info.uid for info in remaining] == [uids[0], uids[2], uids[3]]
        assert await store.stats(guid) == (3, sum(info.size for info in remaining))
        session = await store.open(guid)
        try:
            assert await session.read(uids[2]) == to_crlf(contents[2])
        finally:
            await session.close()

    asyncio.run(scenario())


def test_close_and_abandoned_sessions_delete_nothing(store: MailStore, guid: uuid.UUID) -> None:
    async def scenario() -> None:
        uids = await deliver_all(store, guid, [b"a\n", b"b\n"])
        session = await store.open(guid)
        await session.close()
        assert [info.uid for info in await snapshot(store, guid)] == uids

    asyncio.run(scenario())


def test_stats_counts_messages_and_crlf_octets(store: MailStore, guid: uuid.UUID) -> None:
    contents = list(MESSAGES.values())

    async def scenario() -> None:
        await store.create_mailbox(guid)
        assert await store.stats(guid) == (0, 0)
        await deliver_all(store, guid, contents)
        assert await store.stats(guid) == (len(contents), sum(map(crlf_size, contents)))

    asyncio.run(scenario())


def test_empty_mailbox_opens_with_no_messages(store: MailStore, guid: uuid.UUID) -> None:
    async def scenario() -> None:
        await store.create_mailbox(guid)
        session = await store.open(guid)
        assert list(session.messages) == []
        assert await session.commit([]) == []

    asyncio.run(scenario())


def test_missing_mailbox_is_reported(store: MailStore, guid: uuid.UUID) -> None:
    async def scenario() -> None:
        with pytest.raises(MailboxNotFound):
            await store.open(guid)
        with pytest.raises(MailboxNotFound):
            await store.stats(guid)
        with pytest.raises(MailboxNotFound):
            await store.deliver(guid, b"x\n")
        await store.delete_mailbox(guid)  # idempotent, even when it never existed

    asyncio.run(scenario())


def test_create_mailbox_is_idempotent_and_keeps_mail(store: MailStore, guid: uuid.UUID) -> None:
    async def scenario() -> None:
        uids = await deliver_all(store, guid, [b"keep me\n"])
        await store.create_mailbox(guid)
        assert [info.uid for info in await snapshot(store, guid)] == uids

    asyncio.run(scenario())


def test_delete_mailbox_removes_everything(store: MailStore, guid: uuid.UUID) -> None:
    async def scenario() -> None:
        await deliver_all(store, guid, [b"a\n", b"b\n"])
        await store.delete_mailbox(guid)
        with pytest.raises(MailboxNotFound):
            await store.open(guid)
        await store.delete_mailbox(guid)
        await store.create_mailbox(guid)
        assert await store.stats(guid) == (0, 0)

    asyncio.run(scenario())


def test_mailboxes_are_independent(store: MailStore) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> None:
        await deliver_all(store, alice, [b"for alice\n"])
        await deliver_all(store, bob, [b"for bob\n", b"again\n"])
        session: MailboxSession = await store.open(alice)
        try:
            other = await store.open(bob)  # a lock per mailbox, not per store
            await other.close()
            assert len(session.messages) == 1
        finally:
            await session.close()
        await store.delete_mailbox(alice)
        assert await store.stats(bob) == (2, len(b"for bob\r\nagain\r\n"))

    asyncio.run(scenario())
