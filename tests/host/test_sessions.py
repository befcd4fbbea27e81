"""Admin center sessions: tokens, CSRF tokens and the idle timeout."""

from __future__ import annotations

from popgate.directory import RoleGroup
from popgate.host._sessions import SessionStore
from tests.clock import ManualClock

GROUPS = frozenset({RoleGroup.ORGANIZATION_MANAGEMENT})


def test_a_session_lives_while_it_is_used_and_ends_when_idle() -> None:
    clock = ManualClock()
    store = SessionStore(idle_timeout=60, clock=clock)
    session = store.create("Administrator", "https 127.0.0.1", GROUPS)
    clock.now = 59
    assert store.get(session.token) is session  # used: its idle clock restarts
    clock.now = 118
    assert store.get(session.token) is session
    clock.now = 179
    assert store.get(session.token) is None
    assert store.get(session.token) is None  # and it stays gone


def test_tokens_are_unguessable_and_distinct() -> None:
    store = SessionStore()
    first = store.create("a", "https 127.0.0.1", GROUPS)
    second = store.create("a", "https 127.0.0.1", GROUPS)
    assert first.token != second.token
    assert first.csrf != second.csrf
    assert first.token != first.csrf
    assert len(first.token) >= 40  # 32 random bytes, base64url
    assert store.get("") is None
    assert store.get(None) is None
    assert store.get("not-a-token") is None


def test_logout_ends_only_that_session() -> None:
    store = SessionStore()
    first = store.create("a", "https 127.0.0.1", GROUPS)
    second = store.create("b", "https 127.0.0.1", GROUPS)
    store.end(first.token)
    assert store.get(first.token) is None
    assert store.get(second.token) is second


def test_expired_sessions_are_forgotten_when_new_ones_are_made() -> None:
    clock = ManualClock()
    store = SessionStore(idle_timeout=10, clock=clock)
    for _ in range(100):
        store.create("a", "https 127.0.0.1", GROUPS)
    clock.now = 11
    store.create("b", "https 127.0.0.1", GROUPS)
    assert len(store._sessions) == 1  # memory stays bounded by the live sessions
