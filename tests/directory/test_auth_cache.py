"""The authentication cache: repeated logins skip argon2, changes and failures never hit it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from popgate.directory import Directory, _passwords

from .conftest import Runner

# The tests count verifications rather than time them, so argon2's lowest parameters do.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
RAISED_HASHER = PasswordHasher(time_cost=2, memory_cost=8, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hash and verify with :data:`CHEAP_HASHER` for the duration of a test."""
    monkeypatch.setattr(_passwords, "_HASHER", CHEAP_HASHER)
    _passwords._dummy_hash.cache_clear()
    yield
    # Later tests must not verify unknown users against a cheap dummy hash.
    _passwords._dummy_hash.cache_clear()


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The stored hashes argon2 verified against, in order (a spy on the real function)."""
    calls: list[str | None] = []
    real = _passwords.verify_hash

    def spy(password_hash: str | None, password: str) -> bool:
        calls.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(_passwords, "verify_hash", spy)
    return calls


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_login_does_not_run_argon2(run: Runner, verified: list[str | None]) -> None:
    async def body(d: Directory) -> None:
        added = await d.add_mailbox("alice", password="correct horse")
        assert await d.verify_password("alice", "correct horse") == added
        assert await d.verify_password("alice", "correct horse") == added
        # The entry is the mailbox's, whichever name or address the login used.
        assert await d.verify_password("ALICE@localhost", "correct horse") == added

    run(body)
    assert len(verified) == 1


def test_a_hit_returns_the_current_row(run: Runner, verified: list[str | None]) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", password="correct horse")
        await d.verify_password("alice", "correct horse")
        await d.set_pop_enabled("alice", False)
        mailbox = await d.verify_password("alice", "correct horse")
        assert mailbox is not None
        assert mailbox.pop_enabled is False

    run(body)
    assert len(verified) == 1


def test_changed_password_never_accepts_the_old_one(
    run: Runner, verified: list[str | None]
) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", password="old password")
        assert await d.verify_password("alice", "old password") is not None
        assert await d.verify_password("alice", "old password") is not None
        assert len(verified) == 1
        await d.set_password("alice", "new password")
        assert await d.verify_password("alice", "old password") is None
        assert await d.verify_password("alice", "new password") is not None
        assert await d.verify_password("alice", "new password") is not None
        assert len(verified) == 3
        # Setting the same password again stores a new salt, so that is verified afresh.
        await d.set_password("alice", "new password")
        assert await d.verify_password("alice", "new password") is not None
        assert len(verified) == 4

    run(body)


def test_removed_mailbox_is_refused_despite_a_cached_login(
    run: Runner, verified: list[str | None]
) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", password="secret")
        assert await d.verify_password("alice", "secret") is not None
        await d.remove_mailbox("alice")
        assert await d.verify_password("alice", "secret") is None
        # A new mailbox of the same name has a new GUID and hash: no old entry applies.
        again = await d.add_mailbox("alice", password="secret")
        assert await d.verify_password("alice", "secret") == again

    run(body)
    assert verified[1] is None  # the removed user paid for the dummy hash
    assert len(verified) == 3


def test_failures_are_never_cached(run: Runner, verified: list[str | None]) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", password="correct horse")
        await d.add_mailbox("nopass")
        for attempt in range(1, 4):
            assert await d.verify_password("alice", "wrong") is None
            assert len(verified) == attempt
        assert len(d._auth_cache) == 0
        assert await d.verify_password("alice", "correct horse") is not None
        assert await d.verify_password("alice", "wrong") is None
        assert await d.verify_password("alice", "wrong") is None
        assert len(verified) == 6
        # Unknown users and mailboxes without a password still pay for the dummy hash.
        for _ in range(2):
            assert await d.verify_password("mallory", "guess") is None
            assert await d.verify_password("nopass", "guess") is None
        assert verified[6:] == [None] * 4
        assert len(d._auth_cache) == 1

    run(body)


def test_entries_expire_after_the_ttl(
    run: Runner, verified: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(_passwords, "_monotonic", clock)

    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", password="correct horse")
        assert await d.verify_password("alice", "correct horse") is not None
        clock.now += _passwords.AUTH_CACHE_TTL - 1
        assert await d.verify_password("alice", "correct horse") is not None
        assert len(verified) == 1
        # A hit does not extend the entry: it expires an hour after the verification.
        clock.now += 1
        assert await d.verify_password("alice", "correct horse") is not None
        assert len(verified) == 2
        assert await d.verify_password("alice", "correct horse") is not None
        assert len(verified) == 2

    run(body)


def test_size_bound_evicts_the_least_recently_used(
    run: Runner, verified: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_passwords, "AUTH_CACHE_SIZE", 2)

    async def body(d: Directory) -> None:
        for name in ("a", "b", "c"):
            await d.add_mailbox(name, password=f"{name} password")
        await d.verify_password("a", "a password")
        await d.verify_password("b", "b password")
        await d.verify_password("a", "a password")  # hit: a is now the most recent
        assert len(verified) == 2
        await d.verify_password("c", "c password")  # evicts b
        assert len(d._auth_cache) == 2
        assert await d.verify_password("a", "a password") is not None
        assert len(verified) == 3
        assert await d.verify_password("b", "b password") is not None
        assert len(verified) == 4

    run(body)


def test_rehash_is_done_on_a_real_verification_and_not_cached(
    run: Runner, verified: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(d: Directory) -> None:
        await d.add_mailbox("alice", password="correct horse")
        # Parameters raised since the hash was made: the next real verification rehashes.
        monkeypatch.setattr(_passwords, "_HASHER", RAISED_HASHER)
        assert await d.verify_password("alice", "correct horse") is not None
        assert len(d._auth_cache) == 0  # the entry would be for the hash just replaced
        assert await d.verify_password("alice", "correct horse") is not None
        assert await d.verify_password("alice", "correct horse") is not None

    run(body)
    assert len(verified) == 2
    assert verified[0] != verified[1]


def test_keys_are_unambiguous_and_keyed_per_cache() -> None:
    cache = _passwords.AuthCache()
    keys = {
        cache.key("$argon2id$ab", "c"),
        cache.key("$argon2id$a", "bc"),
        cache.key("$argon2id$ab", "\ud800"),
    }
    assert len(keys) == 3
    assert cache.key("$argon2id$ab", "c") == cache.key("$argon2id$ab", "c")
    assert _passwords.AuthCache().key("$argon2id$ab", "c") not in keys
