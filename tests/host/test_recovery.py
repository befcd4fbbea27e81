"""Recovery options: first, second, subsequent failures and the reset period."""

from __future__ import annotations

from popgate.host._recovery import RecoveryAction, RecoveryPolicy, RecoveryStep
from tests.clock import ManualClock


def test_the_nth_failure_takes_the_nth_step_and_the_last_repeats() -> None:
    policy = RecoveryPolicy(clock=ManualClock())
    delays = [policy.failed().delay for _ in range(5)]
    assert delays == [5.0, 10.0, 30.0, 30.0, 30.0]


def test_failures_are_forgotten_after_the_reset_period() -> None:
    clock = ManualClock()
    policy = RecoveryPolicy(reset_after=60, clock=clock)
    policy.failed()
    policy.failed()
    clock.now += 61
    assert policy.failed().delay == 5.0
    assert policy.failures == 1


def test_take_no_action() -> None:
    policy = RecoveryPolicy(steps=(RecoveryStep(RecoveryAction.NONE),), clock=ManualClock())
    assert policy.failed().action is RecoveryAction.NONE
    assert RecoveryPolicy(steps=(), clock=ManualClock()).failed().action is RecoveryAction.NONE
