"""Admin center sessions: a random token in a cookie, a CSRF token, an idle timeout."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from popgate.directory import RoleGroup

__all__ = ["SESSION_COOKIE", "Session", "SessionStore"]

#: Secure, HttpOnly, SameSite=Strict; the value is the session token.
SESSION_COOKIE = "popgate_session"
#: Idle minutes before a session ends (the admin center logs out).
IDLE_TIMEOUT = 20 * 60


@dataclass
class Session:
    """One logged-in administrator in a browser."""

    token: str
    csrf: str
    name: str
    origin: str
    role_groups: frozenset[RoleGroup]
    last_seen: float


@dataclass
class SessionStore:
    """Sessions in the host's memory: a host restart logs everyone out, as an IIS reset does."""

    idle_timeout: float = IDLE_TIMEOUT
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, Session] = field(default_factory=dict)

    def create(self, name: str, origin: str, role_groups: frozenset[RoleGroup]) -> Session:
        """A new session for a successful login."""
        self._expire()
        session = Session(
            token=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            name=name,
            origin=origin,
            role_groups=role_groups,
            last_seen=self.clock(),
        )
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session for ``token`` (its idle clock restarts), or None."""
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_timeout:
            del self._sessions[token]
            return None
        session.last_seen = now
        return session

    def end(self, token: str | None) -> None:
        """Log out."""
        if token:
            self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = self.clock()
        for token, session in list(self._sessions.items()):
            if now - session.last_seen > self.idle_timeout:
                del self._sessions[token]
