"""Campaign control as database flags (ARCHITECTURE.md §3 rule 9: never Celery's revoke).

- pause: the campaign stops starting runs and its workers stop claiming; generations already running
  finish and their rounds advance. resume: active again, and every pending trajectory is unstamped so
  the scheduler's next tick publishes it (messages consumed while paused were dropped by the claim).
- cancel: the campaign, its unfinished rounds, runs and trajectories are cancelled in one transaction;
  running attempts are fenced off (their workers learn it from their next heartbeat and stop
  generating) and settled; every run's budget is closed.
- retry --failed: failed runs get their failed last round again (new attempts for its failed
  trajectories); the run's budget is reopened.
- delete: the campaign and everything under it.
- budget: a new campaign budget, under the campaign row lock every grant takes.
- quarantine lift: quarantined runs go back to work.

Lock order, as everywhere: round, then trajectory, then run, then campaign.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacore.campaigns.status import find_campaign, summaries
from pacore.core.vocabulary import UNFINISHED, CampaignStatus, Outcome, RunStatus, TrajectoryStatus
from pacore.store.endings import Scope
from pacore.store.store import Store


class ControlError(RuntimeError):
    pass


@dataclass(frozen=True)
class Changed:
    campaign: str
    status: str
    runs: int = 0
    trajectories: int = 0
    model: str | None = None  # with `unqueue`: the generation queue that may hold their messages
    unqueue: tuple[int, ...] = ()  # trajectories none will generate whose messages may still be queued


def _campaign(store: Store, name: str) -> tuple[int, str]:
    campaign = find_campaign(store, name)
    return campaign.id, campaign.status


def pause(store: Store, name: str) -> Changed:
    cid, status = _campaign(store, name)
    if status != CampaignStatus.ACTIVE:
        raise ControlError(f"campaign {name!r} is {status}: only an active campaign can be paused")
    store.set_campaign_status(cid, CampaignStatus.PAUSED)
    return Changed(name, CampaignStatus.PAUSED)


def resume(store: Store, name: str) -> Changed:
    cid, status = _campaign(store, name)
    if status != CampaignStatus.PAUSED:
        raise ControlError(f"campaign {name!r} is {status}: only a paused campaign can be resumed")
    store.set_campaign_status(cid, CampaignStatus.ACTIVE)
    store.wake_scheduler()
    unstamped = store.unstamp_pending(cid)
    store.finish_campaign_if_done(cid)  # a run may have been the last one
    return Changed(name, CampaignStatus.ACTIVE, trajectories=unstamped)


def cancel(store: Store, name: str) -> Changed:
    cid, status = _campaign(store, name)
    if status not in (CampaignStatus.ACTIVE, CampaignStatus.PAUSED):
        raise ControlError(f"campaign {name!r} is {status}: there is nothing to cancel")
    users = store.pool_users(cid, unfinished_only=True)
    if users:
        raise ControlError(
            f"campaign {name!r} is still generating a round-1 pool that {', '.join(map(repr, users))} use: "
            "cancel those first, or pause this one"
        )
    # Rounds first: a round that is no longer `generating` cannot advance (its guarded update fails), and
    # an advance already under way holds the round's lock, so what it creates is seen below.
    store.cancel_generating_rounds(cid)
    # One statement fences off every pending and running attempt and settles the running ones (what they
    # streamed is spent and wasted: nothing comes next); another ends the runs and moves their tokens.
    fenced = store.fence_attempts(
        Scope(campaign=cid),
        UNFINISHED,
        TrajectoryStatus.CANCELLED,
        Outcome.CANCELLED,
        "cancelled by the operator",
    )
    runs = store.end_runs(RunStatus.CANCELLED, "cancelled by the operator", campaign=cid)
    store.cancel_campaign(cid)
    unqueue = tuple(f.trajectory_id for f in fenced if f.status == TrajectoryStatus.PENDING)
    return Changed(name, CampaignStatus.CANCELLED, len(runs), len(fenced), _model(store, name), unqueue)


def retry_failed(store: Store, name: str) -> Changed:
    """Failed runs run their failed round again: new attempts for its failed trajectories."""
    cid, status = _campaign(store, name)
    if status == CampaignStatus.CANCELLED:
        raise ControlError(f"campaign {name!r} is cancelled: there is nothing to retry")
    # a run that failed to start has no round to run again: it is not retried
    rounds = [(r, x) for r, x in store.runs_last_rounds(cid, RunStatus.FAILED) if x is not None]
    if not rounds:
        return Changed(name, status)
    round_ids = [round_id for _, round_id in rounds]
    store.reopen_rounds(round_ids)
    again = store.fence_attempts(
        Scope(rounds=round_ids), [TrajectoryStatus.FAILED], TrajectoryStatus.PENDING, Outcome.FAILED, None
    )
    store.reopen_runs([run_id for run_id, _ in rounds])
    store.wake_scheduler()
    if status == CampaignStatus.DONE:
        store.reopen_campaign(cid)
    return Changed(
        name, CampaignStatus.ACTIVE if status == CampaignStatus.DONE else status, len(rounds), len(again)
    )


def delete(store: Store, name: str) -> Changed:
    cid, status = _campaign(store, name)
    users = store.pool_users(cid, unfinished_only=False)
    if users:
        raise ControlError(
            f"campaign {name!r} holds a round-1 pool that {', '.join(map(repr, users))} use: delete those first"
        )
    if status == CampaignStatus.ACTIVE:
        running = store.count_running_trajectories(cid)
        if running:
            raise ControlError(
                f"campaign {name!r} has {running} trajectories generating: cancel it first (`pacore cancel`)"
            )
    runs = store.count_runs(cid)
    model, unqueue = _model(store, name), tuple(store.queued_trajectories(cid))
    store.delete_campaign(cid)  # cascades
    return Changed(name, "deleted", runs, model=model, unqueue=unqueue)


def _model(store: Store, name: str) -> str:
    return str(find_campaign(store, name).config["model"])


def set_campaign_budget(store: Store, name: str, limit: int | None) -> tuple[int, int, int]:
    """Set the campaign budget. Lowered, it binds every new reservation at once: what runs hold
    granted and unreserved goes back (the blocks trajectories hold may still be spent). Raised (or
    lifted), it resumes the runs that ran out of it. Returns the campaign's (used, reserved) after, and
    how many runs resumed."""
    cid, status = _campaign(store, name)
    old = store.set_campaign_budget(cid, limit)
    raised = old is not None and (limit is None or limit > old)
    resumed = _reopen_exhausted(store, cid, status) if raised and status != CampaignStatus.CANCELLED else 0
    tokens = summaries(store, name)[0]["tokens"]
    return tokens["used"], tokens["reserved"], resumed


def retry_exhausted(store: Store, name: str) -> Changed:
    """Runs that ran out of budget go on: their last round is advanced again (the next round is planned
    with what the budget now allows), and a run that never started a round starts."""
    cid, status = _campaign(store, name)
    if status == CampaignStatus.CANCELLED:
        raise ControlError(f"campaign {name!r} is cancelled: there is nothing to retry")
    resumed = _reopen_exhausted(store, cid, status)
    after = CampaignStatus.ACTIVE if resumed and status == CampaignStatus.DONE else status
    return Changed(name, after, resumed)


def _reopen_exhausted(store: Store, cid: int, status: str) -> int:
    rows = store.runs_last_rounds(cid, RunStatus.BUDGET_EXHAUSTED)
    if not rows:
        return 0
    # a reopened round has nothing unfinished: the dispatch tick advances it again (`stuck_rounds`)
    store.reopen_rounds([round_id for _, round_id in rows if round_id is not None])
    reopened = store.reopen_runs([run_id for run_id, _ in rows])
    store.wake_scheduler()
    if status == CampaignStatus.DONE:
        store.reopen_campaign(cid)
    return len(reopened)


def lift_quarantine(store: Store, name: str) -> list[tuple[int, str | None]]:
    """Put the campaign's quarantined runs back to work: their pending trajectories are published
    again by the scheduler's next tick (woken when this commits), and only engine deaths after now
    count toward a new quarantine. Returns the (run id, quarantine reason) pairs lifted."""
    cid, _ = _campaign(store, name)
    lifted = store.lift_quarantine(cid)
    store.unstamp_pending_of_runs([run_id for run_id, _ in lifted])
    if lifted:
        store.wake_scheduler()
    return lifted
