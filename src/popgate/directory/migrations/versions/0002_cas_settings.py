"""Per-mailbox POP3 settings (Set-CASMailbox) beyond PopEnabled.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-03

Existing mailboxes get NULL, which reads as Exchange's defaults.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add mailboxes.cas_settings."""
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("cas_settings", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop mailboxes.cas_settings (the settings are lost)."""
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("cas_settings")
