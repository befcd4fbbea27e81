"""A graceful stop waits for every session, also those that start while it waits."""

from __future__ import annotations

import asyncio

from popgate.services._runner import SessionTracker


def test_a_session_that_starts_during_the_stop_is_waited_for_not_cut_off() -> None:
    async def scenario() -> tuple[int, list[str]]:
        tracker = SessionTracker()
        ended: list[str] = []

        async def session(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            ended.append(name)

        async def late_handshake() -> None:
            # A TLS handshake accepted before the listeners closed completes during the stop.
            await asyncio.sleep(0.05)
            tracker.start(session("late", 0.3))

        tracker.start(session("early", 0.1))
        handshake = asyncio.ensure_future(late_handshake())
        cancelled = await tracker.drain(grace=5)
        await handshake
        return cancelled, ended

    assert asyncio.run(scenario()) == (0, ["early", "late"])


def test_sessions_still_running_at_the_end_of_the_grace_time_are_cancelled() -> None:
    async def scenario() -> tuple[int, bool]:
        tracker = SessionTracker()
        hanging = asyncio.Event()
        tracker.start(hanging.wait())
        task = next(iter(tracker.tasks))
        cancelled = await tracker.drain(grace=0.1)
        return cancelled, task.cancelled()

    assert asyncio.run(scenario()) == (1, True)
