"""A clock that tests move by hand."""

from __future__ import annotations


class ManualClock:
    """Callable like time.monotonic; ``now`` is set by the test."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
