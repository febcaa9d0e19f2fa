"""Applying the pure `reconcile` decisions to the database, then publishing what they re-drive."""

from __future__ import annotations

from collections import defaultdict

from celery import Celery

from pacore.core.reconcile import AdvanceRound, Redrive, Republish, RoundRow, TrajectoryRow, reconcile
from pacore.core.vocabulary import Outcome, RoundStatus, TrajectoryStatus
from pacore.store.endings import Scope
from pacore.store.store import Store
from scheduler.advance import advance_and_publish
from scheduler.app import runtime
from scheduler.publish import publish
from scheduler.rounds import Publish


def load_rows(
    store: Store,
    campaign_id: int | None,
    everything: bool,
    republish_after: int,
    undelivered_before: dict[str, str] | None = None,
) -> tuple[list[RoundRow], list[TrajectoryRow]]:
    """The rows the reconciler may act on: rounds with nothing unfinished that did not advance, running
    trajectories whose lease expired and pending ones whose message is gone: published longer ago than
    the broker's visibility horizon, or (per model) before `undelivered_before` (with `everything`: all
    running and pending rows). The pure `reconcile` decides; this only narrows the read."""
    rounds = [RoundRow(rid, RoundStatus.GENERATING, 0) for rid in store.stuck_rounds(campaign_id)]
    trajectories = store.reconcile_trajectories(
        campaign_id, everything, republish_after, undelivered_before or {}
    )
    return rounds, trajectories


def sweep(
    app: Celery,
    campaign_id: int | None = None,
    orphan_all_running: bool = False,
    queue_lost: bool = False,
    undelivered_before: dict[str, str] | None = None,
    trust_leases: bool = True,
) -> dict[str, int]:
    """Re-drive what was lost. In single-box mode (at start-up) every running row is orphaned; in a
    fleet, leases say which holders are gone, and a lost queue means every pending row's message is."""
    rt = runtime(app)
    everything = orphan_all_running or queue_lost
    with rt.db.store() as store:
        rows = load_rows(store, campaign_id, everything, rt.settings.republish_after, undelivered_before)
        actions = reconcile(
            *rows, orphan_all_running=orphan_all_running, queue_lost=queue_lost, trust_leases=trust_leases
        )
        to_publish: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for action in actions:
            if isinstance(action, Redrive) and _redrive(store, action):
                to_publish[action.round_id].append((action.trajectory_id, action.stale_attempt + 1))
            elif isinstance(action, Republish):
                to_publish[action.round_id].append((action.trajectory_id, action.attempt))
        models = store.round_models(list(to_publish))
    publish(app, [Publish(rid, models[rid], tids) for rid, tids in to_publish.items()])
    for action in actions:
        if isinstance(action, AdvanceRound):
            advance_and_publish(app, action.round_id)
    counts: dict[str, int] = defaultdict(int)
    for action in actions:
        counts[type(action).__name__] += 1
    return dict(counts)


def _redrive(store: Store, action: Redrive) -> bool:
    """A new attempt fences the old one. The lost attempt is settled in the same statement: its blocks
    go back and the tokens it had streamed (as of its last block request or checkpoint) count as spent,
    in the ledger as preempted; what it checkpointed is kept (the next attempt continues it), the rest
    is waste."""
    fenced = store.fence_attempts(
        Scope(ids=[action.trajectory_id], attempt=action.stale_attempt),
        [TrajectoryStatus.RUNNING],
        TrajectoryStatus.PENDING,
        Outcome.PREEMPTED,
        "the process holding it is gone",
    )
    return bool(fenced)
