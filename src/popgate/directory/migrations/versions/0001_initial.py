"""Initial directory schema: mailboxes, servers, role groups, POP3 settings, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

Types are spelled out here rather than imported from ``_schema`` so that this revision keeps
describing the same tables when the Python definitions move on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create every table of the first release."""
    op.create_table(
        "servers",
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("fqdn", sa.String(253), nullable=False),
        sa.Column("roles", sa.String(64), nullable=False),
        sa.Column("proxy_host", sa.String(253), nullable=False),
        sa.Column("proxy_secret_sha256", sa.String(64), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_servers"),
    )
    op.create_table(
        "mailboxes",
        sa.Column("guid", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("name_key", sa.String(64), nullable=False),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("address_key", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("scram_salt", sa.LargeBinary(), nullable=True),
        sa.Column("scram_iterations", sa.Integer(), nullable=True),
        sa.Column("scram_stored_key", sa.LargeBinary(), nullable=True),
        sa.Column("scram_server_key", sa.LargeBinary(), nullable=True),
        sa.Column("pop_enabled", sa.Boolean(), nullable=False),
        sa.Column("server_name", sa.String(253), nullable=True),
        sa.Column("is_administrator", sa.Boolean(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guid", name="pk_mailboxes"),
        sa.UniqueConstraint("name_key", name="uq_mailboxes_name_key"),
        sa.UniqueConstraint("address_key", name="uq_mailboxes_address_key"),
        sa.ForeignKeyConstraint(
            ["server_name"],
            ["servers.name"],
            name="fk_mailboxes_server_name_servers",
            ondelete="SET NULL",
        ),
    )
    op.create_table(
        "role_group_members",
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("member", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "member", name="pk_role_group_members"),
    )
    op.create_table(
        "pop_settings",
        sa.Column("server_name", sa.String(253), nullable=False),
        sa.Column("configured", sa.Text(), nullable=False),
        sa.Column("effective", sa.Text(), nullable=True),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("server_name", name="pk_pop_settings"),
        sa.ForeignKeyConstraint(
            ["server_name"],
            ["servers.name"],
            name="fk_pop_settings_server_name_servers",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_table(
        "directory_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_directory_settings"),
    )


def downgrade() -> None:
    """Drop every table (children first)."""
    for table in (
        "directory_settings",
        "audit_log",
        "pop_settings",
        "role_group_members",
        "mailboxes",
        "servers",
    ):
        op.drop_table(table)
