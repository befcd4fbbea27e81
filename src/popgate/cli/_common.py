"""What every popgate command shares: errors, consoles and the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from rich.console import Console

__all__ = ["RUNTIME_ERROR", "USAGE_ERROR", "CommandError", "console", "error_console", "run"]

#: Exit status for a command the user got wrong, as argparse uses.
USAGE_ERROR = 2
RUNTIME_ERROR = 1

T = TypeVar("T")
console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)


class CommandError(Exception):
    """A message for the user, and the exit status that goes with it."""

    def __init__(self, message: str, status: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.status = status


def run(coroutine: Awaitable[T]) -> T:
    """Run ``coroutine`` to completion on uvloop."""

    async def wrapper() -> T:
        return await coroutine

    try:
        import uvloop

        return uvloop.run(wrapper())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(wrapper())
