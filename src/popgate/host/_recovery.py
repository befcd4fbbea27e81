"""What the host does when a service process dies: Windows' recovery options.

A service "fails" when its process ends without having been asked to stop. Failures are
counted; the count resets after ``reset_after`` seconds without one. The Nth failure runs
action N-1 of the list, and past its end the last action repeats (sc failure semantics).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

__all__ = ["RecoveryAction", "RecoveryPolicy", "RecoveryStep"]


class RecoveryAction(Enum):
    """What to do after a failure."""

    RESTART = "restart"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class RecoveryStep:
    """One entry of the failure-actions list: an action and the delay before it."""

    action: RecoveryAction
    delay: float = 0.0


@dataclass
class RecoveryPolicy:
    """First, second and subsequent failure actions, and the reset period.

    popgate's default restarts after 5 s, then 10 s, then every 30 s, and forgets failures
    after a day without one. Exchange documents no defaults of its own for the POP3 services.
    """

    steps: tuple[RecoveryStep, ...] = (
        RecoveryStep(RecoveryAction.RESTART, 5.0),
        RecoveryStep(RecoveryAction.RESTART, 10.0),
        RecoveryStep(RecoveryAction.RESTART, 30.0),
    )
    reset_after: float = 86_400.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    _last_failure: float | None = None

    def failed(self) -> RecoveryStep:
        """Count a failure and return the step to take for it."""
        now = self.clock()
        if self._last_failure is not None and now - self._last_failure > self.reset_after:
            self.failures = 0
        self.failures += 1
        self._last_failure = now
        if not self.steps:
            return RecoveryStep(RecoveryAction.NONE)
        return self.steps[min(self.failures, len(self.steps)) - 1]
