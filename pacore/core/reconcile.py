"""Re-driving lost work as a pure decision: rows in, actions out (ARCHITECTURE.md §3 rule 4).

The single-box sweep of `pacore run` uses it with every running row orphaned (the process that ran them
is gone); the fleet reconciler uses it with lease expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pacore.core.vocabulary import RoundStatus, TrajectoryStatus


@dataclass(frozen=True)
class TrajectoryRow:
    id: int
    round_id: int
    status: str
    attempt: int
    lease_expired: bool = False
    publish_stale: bool = False  # published longer ago than the broker's visibility horizon


@dataclass(frozen=True)
class RoundRow:
    id: int
    status: str
    unfinished: int


@dataclass(frozen=True)
class Redrive:
    """A running trajectory whose holder is gone: a new attempt (fencing the old one), then publish."""

    trajectory_id: int
    round_id: int
    stale_attempt: int


@dataclass(frozen=True)
class Republish:
    """A pending trajectory whose message may be lost: publish it again for the same attempt."""

    trajectory_id: int
    round_id: int
    attempt: int


@dataclass(frozen=True)
class AdvanceRound:
    """A round whose trajectories are all finished but which did not advance."""

    round_id: int


Action = Redrive | Republish | AdvanceRound


def reconcile(
    rounds: Iterable[RoundRow],
    trajectories: Iterable[TrajectoryRow],
    orphan_all_running: bool = False,
    queue_lost: bool = False,
    trust_leases: bool = True,
) -> list[Action]:
    """`orphan_all_running`: no process can hold anything (single box at start-up): every running row is
    re-driven and every pending one published again. `queue_lost`: the broker lost its queues: every
    pending row is published again. Otherwise only expired leases and stale publications. Without
    `trust_leases` (the reconciler itself could not reach the database for a lease period, so neither
    could the workers' heartbeats), expired leases are not re-driven yet."""
    actions: list[Action] = []
    for t in trajectories:
        expired = t.lease_expired and trust_leases
        if t.status == TrajectoryStatus.RUNNING and (orphan_all_running or expired):
            actions.append(Redrive(t.id, t.round_id, t.attempt))
        elif t.status == TrajectoryStatus.PENDING and (orphan_all_running or queue_lost or t.publish_stale):
            actions.append(Republish(t.id, t.round_id, t.attempt))
    for r in rounds:
        if r.status == RoundStatus.GENERATING and r.unfinished == 0:
            actions.append(AdvanceRound(r.id))
    return actions
