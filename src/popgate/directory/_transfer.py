"""Moving a directory to another database: ``popgate directory migrate --to URL``.

A computer starts with SQLite; when a second computer joins the organization, the directory
moves to PostgreSQL, which both can reach. The target is brought to the same schema by the
same migrations, must hold no servers, mailboxes or settings yet, and receives every row in
one transaction, so that a failed copy leaves it as empty as it was.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._errors import DirectoryError
from ._schema import metadata

__all__ = ["copy_rows"]

#: Rows per INSERT while copying: large enough to be quick, small enough for any driver.
BATCH = 500


async def copy_rows(source: AsyncEngine, target: AsyncEngine) -> dict[str, int]:
    """Copy every table's rows from ``source`` into the empty ``target``; the counts by table.

    Both must already be at the newest schema revision.
    """
    async with source.connect() as reading, target.begin() as writing:
        taken = [table.name for table in metadata.sorted_tables if await _count(writing, table)]
        if taken:
            raise DirectoryError(
                f"The target directory already has rows in {', '.join(taken)}; migrate into "
                "an empty database (one that popgate has not been set up on)."
            )
        copied: dict[str, int] = {}
        for table in metadata.sorted_tables:
            result = await reading.stream(sa.select(table))
            count = 0
            async for batch in result.mappings().partitions(BATCH):
                await writing.execute(sa.insert(table), [dict(row) for row in batch])
                count += len(batch)
            copied[table.name] = count
        if writing.dialect.name == "postgresql":
            await _continue_sequence(writing)
    return copied


async def _count(connection: AsyncConnection, table: sa.Table) -> int:
    return int(
        (await connection.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
    )


async def _continue_sequence(connection: AsyncConnection) -> None:
    """Rows were inserted with their ids: the next audit entry must come after the last."""
    await connection.execute(
        sa.text(
            "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), "
            "COALESCE((SELECT MAX(id) FROM audit_log), 0) + 1, false)"
        )
    )
