"""Alembic environment for the directory.

:meth:`popgate.directory.Directory.upgrade` passes its own connection in
``config.attributes["connection"]``, so no alembic.ini is needed at run time. For development
(``alembic revision --autogenerate``) a ``sqlalchemy.url`` main option works too.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from popgate.directory._schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode lets later revisions stay portable.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    elif isinstance(connection, Connection):
        _run(connection)
    elif url:
        asyncio.run(_run_with_url(url))
    else:
        raise RuntimeError("no connection: run migrations through Directory.upgrade()")


_main()
