"""completion order

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

The official PaCoRe ordering starts from the order in which a round's responses completed: each fenced
result write stamps `trajectory.finish_seq` from one sequence. A round keeps the orders it was advanced
with: `response_order` (the official stored order, empties included) and `finish_order`. They replace
`message_order`, which listed only the trajectories that gave a message, in an order made from index
order; it is dropped rather than carried under a name that would misstate it.

The conversations (`problem.messages`, `round.input_messages`) become `json`, which keeps the text as
written: `jsonb` reorders object keys, so a message with keys in the submitted order came back reordered
and a round's input was not the official one byte for byte. (Rows already stored keep jsonb's order.)
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CONVERSATIONS = (("problem", "messages"), ("round", "input_messages"))


def upgrade() -> None:
    op.execute("CREATE SEQUENCE trajectory_finish_seq AS bigint")
    op.add_column("trajectory", sa.Column("finish_seq", sa.BigInteger(), nullable=True))
    op.add_column(
        "round", sa.Column("response_order", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column("round", sa.Column("finish_order", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.drop_column("round", "message_order")
    for table, column in _CONVERSATIONS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE json USING {column}::json")


def downgrade() -> None:
    for table, column in _CONVERSATIONS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb")
    op.add_column("round", sa.Column("message_order", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.drop_column("round", "finish_order")
    op.drop_column("round", "response_order")
    op.drop_column("trajectory", "finish_seq")
    op.execute("DROP SEQUENCE trajectory_finish_seq")
