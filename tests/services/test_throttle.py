"""The failed-login throttle, on a fake clock."""

from __future__ import annotations

import asyncio

from popgate.services._throttle import LoginThrottle, PasswordCheckShares
from tests.clock import ManualClock


def test_delays_double_per_failure_and_are_capped() -> None:
    throttle = LoginThrottle(base=1, cap=5, lockout=100, clock=ManualClock(1000.0))
    delays = [throttle.failed("192.0.2.1", "alice") for _ in range(5)]
    assert delays == [1, 2, 4, 5, 5]


def test_unknown_and_existing_accounts_are_counted_alike() -> None:
    throttle = LoginThrottle(base=1, cap=60, lockout=100, clock=ManualClock(1000.0))
    assert throttle.failed("192.0.2.1", "alice") == throttle.failed("192.0.2.2", "nobody")


def test_address_and_account_count_separately_and_the_worst_wins() -> None:
    throttle = LoginThrottle(base=1, cap=60, lockout=100, clock=ManualClock(1000.0))
    throttle.failed("192.0.2.1", "alice")
    throttle.failed("192.0.2.1", "bob")
    # A new account from the same address already waits as a third failure.
    assert throttle.failed("192.0.2.1", "carol") == 4
    # The same account from a new address: alice has one failure so far.
    assert throttle.failed("198.51.100.9", "ALICE") == 2


def test_lockout_refuses_until_the_cap_has_passed() -> None:
    clock = ManualClock(1000.0)
    throttle = LoginThrottle(base=1, cap=30, lockout=3, clock=clock)
    assert [throttle.failed("192.0.2.1", "alice") for _ in range(3)] == [1, 2, 4]
    # Locked for 30 s from when the third failure is answered, 4 s from now.
    assert throttle.locked_for("192.0.2.1", "alice") == 34
    assert throttle.locked_for("198.51.100.9", "alice") == 34  # the account is locked too
    clock.now += 20
    assert throttle.locked_for("192.0.2.1", "zed") == 14  # and the address
    clock.now += 15
    assert throttle.locked_for("192.0.2.1", "alice") == 0


def test_success_clears_the_account_but_not_the_address() -> None:
    throttle = LoginThrottle(base=1, cap=60, lockout=100, clock=ManualClock(1000.0))
    throttle.failed("192.0.2.1", "alice")
    throttle.failed("192.0.2.1", "alice")
    throttle.succeeded("Alice")
    assert throttle.failed("198.51.100.9", "alice") == 1
    assert throttle.failed("192.0.2.1", "bob") == 4  # the address had two failures already


def test_old_failures_are_forgotten() -> None:
    clock = ManualClock(1000.0)
    throttle = LoginThrottle(base=1, cap=60, lockout=100, clock=clock)
    throttle.failed("192.0.2.1", "alice")
    clock.now += 4000
    assert throttle.failed("192.0.2.1", "alice") == 1


def test_password_checks_are_shared_out_by_address_and_core() -> None:
    """One address gets two checks at a time, all addresses together one per core, and
    another address goes ahead of a flooding address's queue."""

    async def scenario() -> tuple[int, int, list[str], int]:
        shares = PasswordCheckShares(per_address=2, cores=3)
        release = asyncio.Event()
        running: list[str] = []
        most_of_one = most_in_all = 0

        async def check(address: str, *, hold: bool) -> None:
            nonlocal most_of_one, most_in_all
            async with shares.turn(address):
                running.append(address)
                most_of_one = max(most_of_one, running.count("192.0.2.1"))
                most_in_all = max(most_in_all, len(running))
                if hold:
                    await release.wait()
                running.remove(address)

        flood = [asyncio.create_task(check("192.0.2.1", hold=True)) for _ in range(50)]
        await asyncio.sleep(0)
        await asyncio.wait_for(check("198.51.100.9", hold=False), 1)  # not behind the 50
        during = list(running)
        crowd = [asyncio.create_task(check(f"203.0.113.{n}", hold=True)) for n in range(20)]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*flood, *crowd)
        return most_of_one, most_in_all, during, len(shares)

    most_of_one, most_in_all, during, addresses_left = asyncio.run(scenario())
    assert most_of_one == 2
    assert most_in_all == 3
    assert during == ["192.0.2.1", "192.0.2.1"]
    assert addresses_left == 0  # nothing is kept for addresses that are done
