"""What every popgate command shares: errors, consoles and the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rich.console import Console

from popgate.cli._errors import RUNTIME_ERROR, USAGE_ERROR, CommandError
from popgate.directory import Directory
from popgate.home import Home

__all__ = [
    "RUNTIME_ERROR",
    "USAGE_ERROR",
    "CommandError",
    "console",
    "error_console",
    "run",
    "table_console",
    "with_directory",
]

T = TypeVar("T")
console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)


def run(coroutine: Awaitable[T]) -> T:
    """Run ``coroutine`` to completion on uvloop."""

    async def wrapper() -> T:
        return await coroutine

    try:
        import uvloop

        return uvloop.run(wrapper())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(wrapper())


#: Columns of a table printed to something that is not a terminal.
PIPED_WIDTH = 200


def table_console() -> Console:
    """Where to print a table: the terminal, or (piped to a script) a console wide enough
    that every row stays on one line."""
    return console if console.is_terminal else Console(width=PIPED_WIDTH)


async def with_directory(home: Home, action: Callable[[Directory], Awaitable[T]]) -> T:
    """Run ``action`` on this computer's directory, connected for it and closed after."""
    async with await Directory.connect(home.directory_url) as directory:
        return await action(directory)
