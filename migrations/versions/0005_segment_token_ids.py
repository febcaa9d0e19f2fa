"""token ids in checkpoints; failed attempts; waiting for budget

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Budgets are hard by construction: a request asks the engine for no more than its attempt holds, and a
trajectory longer than that goes on in a new segment from the exact token ids generated so far (the
engine's `return_token_ids`). A checkpoint keeps those ids beside its text, so that the next segment or
attempt continues from them instead of tokenizing the text again (which need not give the same ids).
`chunk.token_ids` is null for a chunk whose engine sent no ids (and for chunks written before this).

`trajectory.failed_attempts` counts the attempts its own request failed (the engine's errors after the
attempt's retries; engine deaths have their own rule, quarantine): a failed attempt is followed by another until
`PACORE_MAX_ATTEMPTS`, then the trajectory fails with the last error. `retry --failed` resets it.

`trajectory.waiting_since`: a trajectory refused a block stops at its segment boundary and waits, pending
with its checkpoint, until its run and campaign have a block for it again.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chunk", sa.Column("token_ids", postgresql.ARRAY(sa.Integer()), nullable=True))
    op.add_column(
        "trajectory", sa.Column("failed_attempts", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("trajectory", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("trajectory", "waiting_since")
    op.drop_column("trajectory", "failed_attempts")
    op.drop_column("chunk", "token_ids")
