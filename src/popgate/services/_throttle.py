"""Failed-login throttling for the front end: growing delays per address and per account."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["LoginThrottle", "PasswordCheckShares"]

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


#: Password checks one source address may have running at once: two keep an honest gateway
#: (a webmail, a NAT) moving while leaving the rest to everyone else.
CHECKS_PER_ADDRESS = 2


@dataclass
class _Share:
    turns: asyncio.Semaphore
    holders: int = 0


@dataclass
class PasswordCheckShares:
    """Shares the argon2id password checks out: a few per source address, one per core.

    Checks wait in line first come, first served, so without a share per address one
    address's burst of guesses would queue every other client's first login behind all of
    it (6 s to 27 s in tests/security/test_abuse.py before this existed). Without the cap per
    core, a burst from many addresses would run as many checks as the thread pool has threads,
    each on several threads of its own, and starve the event loop that serves everyone else.
    """

    per_address: int = CHECKS_PER_ADDRESS
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    _shares: dict[str, _Share] = field(default_factory=dict)
    _running: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._running = asyncio.Semaphore(self.cores)

    def __len__(self) -> int:
        """How many addresses have checks running or waiting."""
        return len(self._shares)

    @asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        """Wait for a free share of ``address`` and a free core; hold them while checking."""
        share = self._shares.get(address)
        if share is None:
            share = self._shares[address] = _Share(asyncio.Semaphore(self.per_address))
        share.holders += 1
        try:
            async with share.turns, self._running:
                yield
        finally:
            share.holders -= 1
            if share.holders == 0:
                del self._shares[address]
