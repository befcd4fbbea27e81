"""Running the Alembic migrations shipped inside the package, without an alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

__all__ = ["MIGRATIONS", "alembic_config", "current_revision", "head_revision", "upgrade"]

#: The folder with env.py and versions/, installed as part of the package.
MIGRATIONS = Path(__file__).resolve().with_name("migrations")

# Any fixed 64-bit number; it serialises concurrent upgrades of one PostgreSQL database.
_PG_UPGRADE_LOCK = 0x706F_7067_6174_6501


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration built in code, pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Without it Alembic warns about the legacy splitting of version_locations.
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(connection: Connection) -> None:
    """Upgrade the database behind ``connection`` to the newest revision (idempotent)."""
    if connection.dialect.name == "postgresql":
        # Several computers may run setup at once against one shared directory.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None before the first migration."""
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this popgate."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
