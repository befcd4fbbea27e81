"""Failed-login throttling for the front end: growing delays per address and per account."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoginThrottle"]

#: Keys forgotten after this long without a failure, so the table cannot grow without bound
#: from one-off mistakes, and an old run of failures stops counting.
FORGET_AFTER = 3600.0
#: The most keys kept; beyond it the oldest are dropped (a flood of random names).
MAX_KEYS = 100_000


@dataclass
class _Failures:
    count: int
    last: float


@dataclass
class LoginThrottle:
    """Counts failed logins by source address and by account name.

    The delay before answering a failure doubles with each failure in a row,
    ``base * 2**(n-1)`` capped at ``cap``, where n counts the failures of the address or of
    the account, whichever has more; from ``lockout`` failures on, logins are refused without
    checking credentials until ``cap`` seconds after the last failure was answered. Unknown and
    existing accounts are counted alike, so the throttle reveals nothing about either. A
    successful login clears its account's count, not its address's (one valid account must
    not let an address guess others' passwords freely).
    """

    base: float
    cap: float
    lockout: int
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, _Failures] = field(default_factory=dict)

    def _keys(self, address: str, account: str) -> tuple[str, str]:
        return f"address:{address}", f"account:{account.casefold()}"

    def _count(self, key: str, now: float) -> tuple[int, float]:
        entry = self._failures.get(key)
        if entry is None or now - entry.last > FORGET_AFTER:
            return 0, 0.0
        return entry.count, entry.last

    def locked_for(self, address: str, account: str) -> float:
        """Seconds until a login from ``address`` to ``account`` may be tried again (0: now)."""
        now = self.clock()
        wait = 0.0
        for key in self._keys(address, account):
            count, last = self._count(key, now)
            if count >= self.lockout:
                wait = max(wait, last + self.cap - now)
        return wait

    def failed(self, address: str, account: str) -> float:
        """Record a failure; return how long to wait before answering it."""
        now = self.clock()
        keys = self._keys(address, account)
        worst = max(self._count(key, now)[0] for key in keys) + 1
        delay = min(self.base * 2.0 ** (worst - 1), self.cap)
        for key in keys:
            # The lockout runs from when the failure is answered, after its delay.
            self._failures[key] = _Failures(self._count(key, now)[0] + 1, now + delay)
        if len(self._failures) > MAX_KEYS:
            oldest = sorted(self._failures, key=lambda key: self._failures[key].last)
            for key in oldest[: len(oldest) - MAX_KEYS]:
                del self._failures[key]
        return delay

    def succeeded(self, account: str) -> None:
        """A login to ``account`` succeeded: its run of failures is over."""
        self._failures.pop(f"account:{account.casefold()}", None)
