"""quarantine

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Runs can be quarantined (a trajectory that coincided with engine deaths on two workers) and lifted by
an operator: the lift time says which engine deaths still count.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run", sa.Column("quarantine_lifted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("run", "quarantine_lifted_at")
