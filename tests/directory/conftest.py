"""Fixtures that run directory tests against SQLite and, when configured, PostgreSQL.

SQLite always runs, on a temporary file. PostgreSQL is the optional second backend: set
``POPGATE_TEST_POSTGRES_URL=postgresql+asyncpg://user:password@host/database`` to an empty
database that the tests may wipe; without it those cases are reported as skipped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from popgate.directory import Directory
from popgate.directory._schema import metadata

T = TypeVar("T")

POSTGRES_URL_VARIABLE = "POPGATE_TEST_POSTGRES_URL"
POSTGRES_URL = os.environ.get(POSTGRES_URL_VARIABLE, "")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(
            not POSTGRES_URL,
            reason=f"optional backend: set {POSTGRES_URL_VARIABLE} to run against PostgreSQL",
        ),
    ),
]


class Runner:
    """Runs one test body against a freshly upgraded directory, in one event loop.

    Database connections belong to the loop that opened them, so connect, test and close all
    happen inside a single ``asyncio.run``.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, body: Callable[[Directory], Awaitable[T]]) -> T:
        """Run ``body`` with an upgraded directory and return its result."""
        return asyncio.run(self._main(body))

    async def _main(self, body: Callable[[Directory], Awaitable[T]]) -> T:
        directory = await Directory.connect(self.url)
        try:
            await directory.upgrade()
            return await body(directory)
        finally:
            await directory.close()


async def wipe_postgres(url: str) -> None:
    """Drop every table popgate made in the PostgreSQL database at ``url``."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
            await connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with no tables in it."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}"
    else:
        asyncio.run(wipe_postgres(POSTGRES_URL))
        yield POSTGRES_URL


@pytest.fixture
def run(url: str) -> Runner:
    """A :class:`Runner` for the backend under test."""
    return Runner(url)
