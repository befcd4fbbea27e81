"""The failed-login throttle, on a fake clock."""

from __future__ import annotations

from popgate.services._throttle import LoginThrottle
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
