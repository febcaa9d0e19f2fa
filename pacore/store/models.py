"""The data model. Postgres is the source of truth; Celery messages carry only the ids of these rows.

Statuses are plain text, listed next to each table. Large text (trajectory content and reasoning,
checkpoint chunks) uses lz4 TOAST compression where the server has it (see the first migration).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB
from sqlmodel import Field, SQLModel

from pacore.core.vocabulary import CampaignStatus, RoundStatus, RunStatus, TrajectoryStatus

# The status columns' vocabularies: pacore.core.vocabulary.


def _created() -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))


def _when() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True)))


def _fk(target: str, nullable: bool = False) -> Any:
    return Field(sa_column=Column(BigInteger, ForeignKey(target, ondelete="CASCADE"), nullable=nullable))


def _tokens() -> Any:
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    status: str = Field(
        default=CampaignStatus.ACTIVE,
        sa_column=Column(Text, nullable=False, server_default=CampaignStatus.ACTIVE.value),
    )
    config: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    source: str | None = Field(default=None, sa_column=Column(Text))
    problem_budget: int | None = Field(default=None, sa_column=Column(BigInteger))
    campaign_budget: int | None = Field(default=None, sa_column=Column(BigInteger))
    tokens_used: int = _tokens()
    tokens_reserved: int = _tokens()
    prompt_tokens: int = _tokens()
    created_at: datetime = _created()
    finished_at: datetime | None = _when()
    archived_to: str | None = Field(default=None, sa_column=Column(Text))  # `pacore archive`
    text_purged_at: datetime | None = _when()


class Problem(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("campaign_id", "external_id"),)
    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    campaign_id: int = _fk("campaign.id")
    external_id: str = Field(sa_column=Column(Text, nullable=False))
    # json, not jsonb: the conversation's text as submitted, object keys in their order (a wire format)
    messages: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    ground_truth: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    category: str | None = Field(default=None, sa_column=Column(Text))
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    line: int = Field(sa_column=Column(Integer, nullable=False))


class Run(SQLModel, table=True):
    """One independent PaCoRe run of a problem; a campaign has `samples` runs per problem."""

    __table_args__ = (
        UniqueConstraint("problem_id", "sample"),
        Index("ix_run_campaign_status", "campaign_id", "status"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    campaign_id: int = _fk("campaign.id")
    problem_id: int = _fk("problem.id")
    sample: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(
        default=RunStatus.PENDING,
        sa_column=Column(Text, nullable=False, server_default=RunStatus.PENDING.value),
    )
    reason: str | None = Field(default=None, sa_column=Column(Text))
    answer: str | None = Field(default=None, sa_column=Column(Text))
    final_message: str | None = Field(default=None, sa_column=Column(Text))
    # Budgets (pacore/core/budget.py): used + reserved <= granted <= token_limit.
    token_limit: int | None = Field(default=None, sa_column=Column(BigInteger))
    tokens_granted: int = _tokens()
    tokens_used: int = _tokens()
    tokens_reserved: int = _tokens()
    tokens_wasted: int = _tokens()
    prompt_tokens: int = _tokens()
    created_at: datetime = _created()
    started_at: datetime | None = _when()
    finished_at: datetime | None = _when()
    # When an operator last lifted a quarantine: engine deaths before it no longer count.
    quarantine_lifted_at: datetime | None = _when()


class Round(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("run_id", "index"),)
    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    run_id: int = _fk("run.id")
    index: int = Field(sa_column=Column(Integer, nullable=False))  # 1-based
    k: int = Field(sa_column=Column(Integer, nullable=False))
    is_final: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default="false"))
    max_tokens: int | None = Field(default=None, sa_column=Column(Integer))
    input_messages: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))  # as sent
    status: str = Field(
        default=RoundStatus.GENERATING,
        sa_column=Column(Text, nullable=False, server_default=RoundStatus.GENERATING.value),
    )
    # Set when the round advances. Trajectory positions in the official stored order (completion order,
    # stable-sorted by len(content), shuffled by the campaign seed; empties included), and in the order
    # they completed (finish_seq; a round drawn from a pool: its sample order).
    response_order: list[int] | None = Field(default=None, sa_column=Column(JSONB))
    finish_order: list[int] | None = Field(default=None, sa_column=Column(JSONB))
    # Why the round has this K, final flag and max_tokens (the budget policy), and what came of it.
    plan_reason: str | None = Field(default=None, sa_column=Column(Text))
    decision: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _created()
    finished_at: datetime | None = _when()


class Trajectory(SQLModel, table=True):
    """One generation, keyed by (round, index). `attempt` fences every write (ARCHITECTURE.md §3 rule 1)."""

    __table_args__ = (
        UniqueConstraint("round_id", "index"),
        Index("ix_trajectory_campaign_status", "campaign_id", "status"),
        Index(
            "ix_trajectory_unfinished",
            "round_id",
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    campaign_id: int = _fk("campaign.id")
    round_id: int = _fk("round.id")
    index: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(
        default=TrajectoryStatus.PENDING,
        sa_column=Column(Text, nullable=False, server_default=TrajectoryStatus.PENDING.value),
    )
    attempt: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    # attempts its own request failed (the engine's errors after retries); at PACORE_MAX_ATTEMPTS it fails
    failed_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # refused a block: pending, it waits until its run and campaign have one for it again
    waiting_since: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    sampling_seed: int | None = Field(default=None, sa_column=Column(BigInteger))
    worker_id: str | None = Field(default=None, sa_column=Column(Text))
    lease_until: datetime | None = _when()
    published_at: datetime | None = _when()
    content: str | None = Field(default=None, sa_column=Column(Text))
    reasoning: str | None = Field(default=None, sa_column=Column(Text))
    message: str | None = Field(default=None, sa_column=Column(Text))
    finish_reason: str | None = Field(default=None, sa_column=Column(Text))
    prompt_tokens: int | None = Field(default=None, sa_column=Column(Integer))
    completion_tokens: int | None = Field(default=None, sa_column=Column(Integer))
    # Completion order: stamped from the sequence trajectory_finish_seq by the fenced result write.
    finish_seq: int | None = Field(default=None, sa_column=Column(BigInteger))
    # The running attempt's budget state: blocks held, and tokens streamed as of the last block request.
    tokens_reserved: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    tokens_streamed: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _created()
    started_at: datetime | None = _when()
    finished_at: datetime | None = _when()


class RoundTrajectory(SQLModel, table=True):
    """Which trajectories a round uses, at which position. Usually a round's own; with a shared round-1
    pool, one trajectory serves several runs."""

    __tablename__ = "round_trajectory"
    __table_args__ = (Index("ix_round_trajectory_trajectory", "trajectory_id"),)
    round_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("round.id", ondelete="CASCADE"), primary_key=True)
    )
    position: int = Field(sa_column=Column(Integer, primary_key=True))
    trajectory_id: int = _fk("trajectory.id")


class Attempt(SQLModel, table=True):
    """Append-only ledger: one row per (trajectory, attempt), written once when the attempt settles."""

    __table_args__ = (UniqueConstraint("trajectory_id", "attempt"),)
    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    trajectory_id: int = _fk("trajectory.id")
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    worker_id: str | None = Field(default=None, sa_column=Column(Text))
    # done | failed | preempted (its process vanished) | returned (drained) | engine_lost
    outcome: str = Field(sa_column=Column(Text, nullable=False))
    preempted: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default="false"))
    prompt_tokens: int = _tokens()
    completion_tokens: int = _tokens()  # every token this attempt cost, retried tries included
    wasted_tokens: int = (
        _tokens()
    )  # of which: not in the kept result (failed tries, failed or preempted attempts)
    retries: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    error: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime | None = _when()
    finished_at: datetime = _created()


class Chunk(SQLModel, table=True):
    """Append-only checkpoint of a streaming trajectory; never a growing text value rewritten."""

    __table_args__ = (UniqueConstraint("trajectory_id", "attempt", "seq"),)
    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    trajectory_id: int = _fk("trajectory.id")
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    seq: int = Field(sa_column=Column(Integer, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    tokens: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # the engine's ids of `text` (null: it sent none); a continuation sends them as they are
    token_ids: list[int] | None = Field(default=None, sa_column=Column(ARRAY(Integer), nullable=True))
    created_at: datetime = _created()


class Worker(SQLModel, table=True):
    """The node registry: one row per worker process, kept fresh by its heartbeat."""

    id: str = Field(sa_column=Column(Text, primary_key=True))
    hostname: str = Field(sa_column=Column(Text, nullable=False))
    pid: int = Field(sa_column=Column(Integer, nullable=False))
    queue: str = Field(sa_column=Column(Text, nullable=False))
    model: str = Field(sa_column=Column(Text, nullable=False))
    revision: str | None = Field(default=None, sa_column=Column(Text))
    engine_url: str | None = Field(default=None, sa_column=Column(Text))
    concurrency: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(default="up", sa_column=Column(Text, nullable=False, server_default="up"))
    started_at: datetime = _created()
    heartbeat_at: datetime = _created()
