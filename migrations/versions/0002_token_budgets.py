"""token budgets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Hierarchical token budgets: runs hold grants from their campaign, trajectories reserve blocks from
their run. Existing rows are carried over: each run's limit is its campaign's problem budget, its grant
is what it used, and a campaign's counters become (usage of finished runs, grants of the others).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempt", sa.Column("wasted_tokens", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("attempt", sa.Column("retries", sa.Integer(), server_default="0", nullable=False))
    op.add_column("round", sa.Column("is_final", sa.Boolean(), server_default="false", nullable=False))
    op.add_column("round", sa.Column("max_tokens", sa.Integer(), nullable=True))
    op.add_column("round", sa.Column("plan_reason", sa.Text(), nullable=True))
    op.add_column("run", sa.Column("token_limit", sa.BigInteger(), nullable=True))
    op.add_column("run", sa.Column("tokens_granted", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("run", sa.Column("tokens_wasted", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column(
        "trajectory", sa.Column("tokens_reserved", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "trajectory", sa.Column("tokens_streamed", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute(
        "UPDATE run SET token_limit = c.problem_budget, tokens_granted = run.tokens_used FROM campaign c WHERE c.id = run.campaign_id"
    )
    op.execute(
        "UPDATE round SET is_final = (round.index = jsonb_array_length(c.config -> 'rounds') + 1) "
        "FROM run JOIN campaign c ON c.id = run.campaign_id WHERE run.id = round.run_id"
    )
    op.execute(
        "UPDATE campaign c SET "
        "tokens_used = coalesce((SELECT sum(tokens_used) FROM run WHERE run.campaign_id = c.id AND run.status NOT IN ('pending', 'running')), 0), "
        "tokens_reserved = coalesce((SELECT sum(tokens_granted) FROM run WHERE run.campaign_id = c.id AND run.status IN ('pending', 'running')), 0)"
    )


def downgrade() -> None:
    op.drop_column("trajectory", "tokens_streamed")
    op.drop_column("trajectory", "tokens_reserved")
    op.drop_column("run", "tokens_wasted")
    op.drop_column("run", "tokens_granted")
    op.drop_column("run", "token_limit")
    op.drop_column("round", "plan_reason")
    op.drop_column("round", "max_tokens")
    op.drop_column("round", "is_final")
    op.drop_column("attempt", "retries")
    op.drop_column("attempt", "wasted_tokens")
