"""Table definitions (SQLAlchemy Core) shared by the queries and checked against the migration.

The migration in ``migrations/versions`` is the authority for the database; these objects
describe the same tables for building queries, and a test checks they agree.
Only portable types are used so that SQLite and PostgreSQL share one schema.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "NAMING_CONVENTION",
    "audit_log",
    "directory_settings",
    "mailboxes",
    "metadata",
    "move_requests",
    "pop_settings",
    "role_group_members",
    "servers",
]

#: Explicit constraint names keep migrations portable (PostgreSQL needs names to drop them).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    SQLite has no time-zone type and hands back naive values; this attaches UTC on the way out
    and refuses naive values on the way in, so callers always compare aware datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC before storing."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the directory; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

servers = sa.Table(
    "servers",
    metadata,
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("fqdn", sa.String(253), nullable=False),
    # Comma-separated Role values in sorted order, e.g. "ClientAccess,Mailbox".
    sa.Column("roles", sa.String(64), nullable=False),
    sa.Column("proxy_host", sa.String(253), nullable=False),
    sa.Column("proxy_secret_sha256", sa.String(64), nullable=True),
    sa.Column("created", UtcDateTime(), nullable=False),
    # The host's control API (https://fqdn:port/) for remote management; NULL without HTTPS.
    sa.Column("control_url", sa.String(512), nullable=True),
    # The host's own certificate: other hosts trust exactly this one for this server.
    sa.Column("certificate_pem", sa.Text(), nullable=True),
)

mailboxes = sa.Table(
    "mailboxes",
    metadata,
    sa.Column("guid", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    # Lower-cased copies carry the case-insensitive uniqueness portably (no COLLATE NOCASE).
    sa.Column("name_key", sa.String(64), nullable=False, unique=True),
    sa.Column("address", sa.String(254), nullable=False),
    sa.Column("address_key", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text(), nullable=True),
    sa.Column("scram_salt", sa.LargeBinary(), nullable=True),
    sa.Column("scram_iterations", sa.Integer(), nullable=True),
    sa.Column("scram_stored_key", sa.LargeBinary(), nullable=True),
    sa.Column("scram_server_key", sa.LargeBinary(), nullable=True),
    sa.Column("pop_enabled", sa.Boolean(), nullable=False),
    sa.Column(
        "server_name",
        sa.String(253),
        sa.ForeignKey("servers.name", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("is_administrator", sa.Boolean(), nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
    # JSON text of CasMailboxSettings.to_json() without pop_enabled (the column above): only
    # the values that differ from the defaults; NULL when none do.
    sa.Column("cas_settings", sa.Text(), nullable=True),
    # Set-Mailbox -ProhibitSendReceiveQuota in bytes; NULL is Unlimited.
    sa.Column("prohibit_send_receive_quota", sa.BigInteger(), nullable=True),
)

role_group_members = sa.Table(
    "role_group_members",
    metadata,
    sa.Column("group_name", sa.String(64), primary_key=True),
    sa.Column("member", sa.String(256), primary_key=True),
)

pop_settings = sa.Table(
    "pop_settings",
    metadata,
    sa.Column(
        "server_name",
        sa.String(253),
        sa.ForeignKey("servers.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    # JSON text of PopSettings.to_json(): only the values that differ from the defaults.
    sa.Column("configured", sa.Text(), nullable=False),
    # NULL until a service start applied the configured copy.
    sa.Column("effective", sa.Text(), nullable=True),
    sa.Column("updated", UtcDateTime(), nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    # BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.Text(), nullable=False),
    sa.Column("origin", sa.Text(), nullable=False),
    sa.Column("action", sa.Text(), nullable=False),
    sa.Column("target", sa.Text(), nullable=False),
    sa.Column("result", sa.Text(), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
)

move_requests = sa.Table(
    "move_requests",
    metadata,
    sa.Column(
        "mailbox_guid",
        sa.Uuid(),
        sa.ForeignKey("mailboxes.guid", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("source_server", sa.String(253), nullable=False),
    sa.Column("target_server", sa.String(253), nullable=False),
    # MoveStatus values: Queued, InProgress, Completed, Failed.
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("requested_by", sa.Text(), nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("updated", UtcDateTime(), nullable=False),
)

directory_settings = sa.Table(
    "directory_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)
