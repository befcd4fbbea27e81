"""Schema migrations: idempotent, matching the table definitions, shipped with the package."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

import popgate.directory
from popgate.directory import Directory, DirectoryError
from popgate.directory._migrate import MIGRATIONS, alembic_config, head_revision
from popgate.directory._schema import metadata

from .conftest import Runner


def test_upgrade_is_idempotent_and_reported(url: str) -> None:
    async def main() -> None:
        d = await Directory.connect(url)
        try:
            assert await d.needs_upgrade() is True
            await d.upgrade()
            assert await d.needs_upgrade() is False
            await d.add_mailbox("alice")
            await d.upgrade()  # again: nothing changes, nothing is lost
            assert [m.name for m in await d.list_mailboxes()] == ["alice"]
        finally:
            await d.close()

    asyncio.run(main())


# SQLAlchemy's PostgreSQL column reflection compares a value with both "" and b"\x00" on
# purpose (the type depends on the driver), which python -bb reports; the code is theirs.
@pytest.mark.filterwarnings("ignore::BytesWarning")
def test_migrations_create_exactly_the_declared_schema(run: Runner) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async def body(d: Directory) -> list[object]:
        async with d._engine.connect() as connection:
            return await connection.run_sync(diff)

    assert run(body) == []


def test_downgrade_to_base_and_up_again(run: Runner) -> None:
    def down_and_up(connection: Connection) -> set[str]:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        left = set(sa.inspect(connection).get_table_names()) - {"alembic_version"}
        command.upgrade(config, "head")
        return left

    async def body(d: Directory) -> set[str]:
        async with d._engine.begin() as connection:
            return await connection.run_sync(down_and_up)

    assert run(body) == set()


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    async def main() -> tuple[object, ...]:
        d = await Directory.connect(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
        try:
            await d.upgrade()
            async with d._engine.connect() as connection:
                values = []
                for name in ("journal_mode", "foreign_keys", "busy_timeout"):
                    values.append((await connection.exec_driver_sql(f"PRAGMA {name}")).scalar())
                return tuple(values)
        finally:
            await d.close()

    assert asyncio.run(main()) == ("wal", 1, 10_000)


def test_in_memory_sqlite_shares_one_database() -> None:
    async def main() -> list[str]:
        d = await Directory.connect("sqlite+aiosqlite://")
        try:
            await d.upgrade()
            await d.add_mailbox("alice")
            return [m.name for m in await d.list_mailboxes()]
        finally:
            await d.close()

    assert asyncio.run(main()) == ["alice"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("sqlite:///x.db", r"use sqlite\+aiosqlite"),
        ("mysql+aiomysql://u@h/db", "not supported"),
    ],
)
def test_connect_refuses_unsupported_urls(url: str, message: str) -> None:
    with pytest.raises(DirectoryError, match=message):
        asyncio.run(Directory.connect(url))


def test_migration_files_are_inside_the_package() -> None:
    package = Path(popgate.directory.__file__).parent
    assert package / "migrations" == MIGRATIONS
    # setuptools' find_packages only ships folders with __init__.py; package-data ships the
    # template (pyproject: directory/migrations/*.mako).
    for relative in (
        "migrations/__init__.py",
        "migrations/env.py",
        "migrations/script.py.mako",
        "migrations/versions/__init__.py",
        "migrations/versions/0001_initial.py",
        "migrations/versions/0002_cas_settings.py",
        "migrations/versions/0003_mailbox_quota.py",
        "migrations/versions/0004_server_endpoints_moves.py",
    ):
        assert (package / relative).is_file(), relative
    assert head_revision() == "0004"
