"""Each server's control API address and certificate; mailbox move requests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

With the roles on several computers, a host reaches another host's control API (remote
management, mailbox moves) at ``servers.control_url`` and trusts exactly the certificate that
host registered (``servers.certificate_pem``), as front ends do for the backend hop.
Existing servers get NULL for both until their next setup or host start registers them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add servers.control_url and servers.certificate_pem; create move_requests."""
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("control_url", sa.String(512), nullable=True))
        batch.add_column(sa.Column("certificate_pem", sa.Text(), nullable=True))
    op.create_table(
        "move_requests",
        sa.Column("mailbox_guid", sa.Uuid(), nullable=False),
        sa.Column("source_server", sa.String(253), nullable=False),
        sa.Column("target_server", sa.String(253), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_guid"],
            ["mailboxes.guid"],
            name="fk_move_requests_mailbox_guid_mailboxes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_guid", name="pk_move_requests"),
    )


def downgrade() -> None:
    """Drop move_requests and the two server columns."""
    op.drop_table("move_requests")
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("certificate_pem")
        batch.drop_column("control_url")
