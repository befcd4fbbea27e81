"""Per-mailbox size limit (Set-Mailbox -ProhibitSendReceiveQuota), enforced at delivery.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Existing mailboxes get NULL: Unlimited, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add mailboxes.prohibit_send_receive_quota."""
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("prohibit_send_receive_quota", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop mailboxes.prohibit_send_receive_quota (the limits are lost)."""
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("prohibit_send_receive_quota")
