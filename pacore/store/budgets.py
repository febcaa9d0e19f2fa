"""Applying the budget decisions of pacore.core.budget to the database.

Every change of the counters is one statement: a block is one conditional statement over the attempt's
trajectory and its run, and a grant one over the campaign and the run (`sql/budgets.sql`), each taking
what `pacore.core.budget.take` would; an attempt's settlement is part of the statement that writes its
result (`finish_attempts`) or fences it off (`fence_attempts`), and a run's end or reopening moves its
tokens in the statement that ends or reopens it (`end_runs`, `reopen_runs`), as `apply_settle`,
`apply_finish` and `apply_reopen` define. Locks are always taken in one order — trajectory rows, then
run rows, then the campaign row — so that no two transactions can wait on each other in a cycle; and
with FOR NO KEY UPDATE, which foreign-key checks of concurrent inserts do not wait on. The campaign row
is touched only when a run takes a grant or ends, never per trajectory; and a campaign without a budget
is not touched by grants at all (its reservation count stays 0; `set_campaign_budget` computes it from
the runs' grants when a budget is set), so that a fleet's first blocks never queue on one row.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacore.core.budget import CampaignTokens, RunTokens, grant_request
from pacore.store.counters import Reserved
from pacore.store.store import Store


class Fenced(Exception):
    """The attempt no longer owns its trajectory (a newer attempt took over)."""


@dataclass(frozen=True)
class Holder:
    trajectory_id: int
    attempt: int
    run_id: int
    campaign_id: int


def reserve(
    store: Store, holder: Holder, want: int, streamed: int, grant: int, held: int, minimum: int = 1
) -> int:
    """Reserve `want` tokens (or what is left, if at least `minimum`) for a running attempt that holds
    `held`; 0 when the budget refuses. Raises Fenced. One statement from the run's free grant; when that
    cannot cover it, one more for a grant from the campaign and one to take from it. Idempotent: run
    again after a commit whose answer was lost, it finds the attempt holding more than `held` and
    returns that block instead of another."""
    taken = _reserve_block(store, holder, want, streamed, held, minimum)
    assert taken.before is not None  # _reserve_block raised Fenced otherwise
    if taken.before > held:  # a retry: the lost commit took this block already
        return taken.before - held
    if taken.got:
        return taken.got
    ask = grant_request(taken.run, want, grant)
    needed = max(1, minimum - taken.run.free_grant)
    if ask < needed or not store.grant_to_run(holder.run_id, holder.campaign_id, ask, minimum=needed):
        return 0
    return _reserve_block(store, holder, want, streamed, held, minimum).got


def reserve_first(store: Store, asks: list[tuple[Holder, int]]) -> dict[int, int]:
    """Attempts just claimed take their first blocks (`want` each) from their runs' free grants, in one
    statement: what each holds after, by trajectory id (0: its run's free grant had nothing left for it;
    absent: it no longer runs the trajectory). No grant. Idempotent as `reserve`: an attempt that holds a
    block already (a re-claim after a lost answer) takes none and finds the one it holds."""
    if not asks:
        return {}
    return store.reserve_first_blocks([(h.trajectory_id, h.attempt, h.run_id, want) for h, want in asks])


def grant_ahead(store: Store, run_id: int, campaign_id: int, need: int, grant: int) -> int:
    """A grant so that the run's free grant covers `need` tokens, when it does not (nothing for a run
    that has ended): for a transaction of its own, since a grant locks the campaign's row until its
    transaction commits. Returns what the campaign gave."""
    run = store.lock_live_run_tokens(run_id)
    if run is None or run.free_grant >= need:
        return 0
    ask = grant_request(run, need, grant)
    return store.grant_to_run(run_id, campaign_id, ask, minimum=1) if ask > 0 else 0


def _reserve_block(
    store: Store, holder: Holder, want: int, streamed: int, held: int, minimum: int
) -> Reserved:
    taken = store.reserve_block(
        holder.trajectory_id, holder.attempt, holder.run_id, want, minimum, streamed, held
    )
    if taken.before is None:
        raise Fenced(f"trajectory {holder.trajectory_id} attempt {holder.attempt} is no longer running")
    return taken


def room(run: RunTokens, campaign: CampaignTokens) -> int | None:
    """What the run may still spend, at both levels (None: unlimited), from counters read at a round
    boundary to plan the round (`PlanCounters`): an estimate (the blocks enforce the budget), so
    the campaign row is read, not locked (it is locked per grant of a budgeted campaign and per run end only)."""
    limits = []
    if run.limit is not None:
        limits.append(run.limit - run.used - run.reserved)
    if campaign.available is not None:
        limits.append(campaign.available + run.free_grant)
    return max(0, min(limits)) if limits else None
