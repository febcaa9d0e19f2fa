"""quarantine and archives

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Runs can be quarantined (a trajectory that coincided with engine deaths on two workers) and lifted by
an operator: the lift time says which engine deaths still count. A campaign remembers where it was
archived and whether its text was purged from the database.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run", sa.Column("quarantine_lifted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("campaign", sa.Column("archived_to", sa.Text(), nullable=True))
    op.add_column("campaign", sa.Column("text_purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("campaign", "text_purged_at")
    op.drop_column("campaign", "archived_to")
    op.drop_column("run", "quarantine_lifted_at")
