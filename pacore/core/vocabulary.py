"""The status vocabularies of campaigns, runs, rounds, trajectories and ledger outcomes: one place,
used by every writer and reader (the SQL in `pacore/store/sql` spells the same words)."""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    NO_CONCLUSION = "no_conclusion"  # its final round ended without a conclusion: graded as no answer
    CANCELLED = "cancelled"
    QUARANTINED = "quarantined"


class RoundStatus(StrEnum):
    GENERATING = "generating"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrajectoryStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    """How an attempt ended, as the ledger records it."""

    DONE = "done"
    FAILED = "failed"
    PREEMPTED = "preempted"  # its process vanished
    RETURNED = "returned"  # handed back: drained, or its engine was down
    ENGINE_LOST = "engine_lost"  # its request was in flight when its engine died
    CANCELLED = "cancelled"


UNFINISHED = (TrajectoryStatus.PENDING, TrajectoryStatus.RUNNING)
