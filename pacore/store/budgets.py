"""Applying the budget decisions of pacore.core.budget to the database.

A block is one conditional statement over the attempt's trajectory and its run, and a grant one over
the campaign and the run (`sql/budgets.sql`): each takes what `pacore.core.budget.take` would. The rarer
changes (an overrun's settlement, a run's end or reopening) lock the rows, read the counters, ask the
pure code and write the result. Locks are always taken in one order — the attempt's own trajectory row, then the run row, then
the campaign row — so that no two transactions can wait on each other in a cycle; and with FOR NO KEY
UPDATE, which foreign-key checks of concurrent inserts do not wait on. The campaign row is touched only
when a run takes a grant or ends, never per trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pacore.core.budget import (
    RunTokens,
    apply_finish,
    apply_grant,
    apply_reopen,
    apply_reserve,
    grant_request,
)
from pacore.core.vocabulary import Outcome
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


def _take(
    store: Store, run: RunTokens, holder: Holder, want: int, minimum: int, grant: int
) -> tuple[RunTokens, int]:
    """Reserve from the run's grant, topping the grant up from the campaign when it cannot cover it."""
    updated, got = apply_reserve(run, want, minimum)
    if got:
        return updated, got
    campaign = store.lock_campaign_tokens(holder.campaign_id)
    run, campaign, given = apply_grant(run, campaign, grant_request(run, want, grant), minimum)
    if given:
        store.write_campaign_tokens(holder.campaign_id, campaign)
    return apply_reserve(run, want, minimum)


def reserve(store: Store, holder: Holder, want: int, streamed: int, grant: int, held: int) -> int:
    """Reserve up to `want` tokens for a running attempt that holds `held`; 0 when the budget refuses.
    Raises Fenced. One statement from the run's free grant; when that is spent, one more for a grant
    from the campaign and one to take from it. Idempotent: run again after a commit whose answer was
    lost, it finds the attempt holding more than `held` and returns that block instead of another."""
    taken = _reserve_block(store, holder, want, streamed, held)
    assert taken.before is not None  # _reserve_block raised Fenced otherwise
    if taken.before > held:  # a retry: the lost commit took this block already
        return taken.before - held
    if taken.got:
        return taken.got
    ask = grant_request(taken.run, want, grant)
    if ask <= 0 or not store.grant_to_run(holder.run_id, holder.campaign_id, ask, minimum=1):
        return 0
    return _reserve_block(store, holder, want, streamed, held).got


def _reserve_block(store: Store, holder: Holder, want: int, streamed: int, held: int) -> Reserved:
    taken = store.reserve_block(holder.trajectory_id, holder.attempt, holder.run_id, want, 1, streamed, held)
    if taken.before is None:
        raise Fenced(f"trajectory {holder.trajectory_id} attempt {holder.attempt} is no longer running")
    return taken


def settle(
    store: Store, holder: Holder, reserved: int, used: int, wasted: int, prompt: int, grant: int
) -> int:
    """An attempt ends: its reservation becomes what it used. Once per (trajectory, attempt), guarded by
    the attempt ledger. Returns the overrun: tokens used past what the budget could cover, which only an
    engine sending several tokens in its last chunks can cause (vLLM streams one per chunk); it is taken
    from the budget when there is room, and reported when there is not."""
    run = store.lock_run_tokens(holder.run_id)
    if used > reserved:
        run, extra = _take(store, run, holder, used - reserved, minimum=used - reserved, grant=grant)
        reserved += extra
    overrun = max(0, used - reserved)
    run = replace(run, used=run.used + used, reserved=run.reserved - reserved)
    store.write_run_tokens(holder.run_id, run)
    store.add_run_waste_and_prompt(holder.run_id, wasted, prompt)
    return overrun


def finish_run(store: Store, run_id: int, campaign_id: int) -> None:
    """A run ends: its usage moves to the campaign and the rest of its grant goes back."""
    run = store.lock_run_tokens(run_id)
    campaign = store.lock_campaign_tokens(campaign_id)
    run, campaign = apply_finish(run, campaign)
    store.write_run_tokens(run_id, run)
    store.write_campaign_tokens(campaign_id, campaign)


def room(store: Store, run_id: int, campaign_id: int) -> int | None:
    """What the run may still spend, at both levels (None: unlimited). Read at a round boundary, to plan
    the round: an estimate (the blocks enforce the budget), so the campaign row is read, not locked (it
    is locked per grant and per run end only)."""
    run = store.lock_run_tokens(run_id)
    campaign = store.campaign_tokens(campaign_id)
    limits = []
    if run.limit is not None:
        limits.append(run.limit - run.used - run.reserved)
    if campaign.available is not None:
        limits.append(campaign.available + run.free_grant)
    return max(0, min(limits)) if limits else None


def settle_lost(
    store: Store,
    holder: Holder,
    reserved: int,
    streamed: int,
    checkpointed: int,
    outcome: str,
    error: str,
) -> None:
    """Settle an attempt that will not finish (its process is gone, or its campaign was cancelled), once,
    through the ledger: what it had streamed (as of its last block request or checkpoint, never past
    its reservation) is spent; of that, what it checkpointed is kept for the next attempt, unless
    `outcome` is `cancelled` (nothing comes next), and the rest is waste."""
    used = min(max(streamed, checkpointed), reserved)
    wasted = used if outcome == Outcome.CANCELLED else max(0, used - checkpointed)
    if store.record_attempt(
        holder.trajectory_id, holder.attempt, outcome, used, wasted, preempted=True, error=error
    ):
        settle(store, holder, reserved, used, wasted, 0, grant=0)


def reopen_run(store: Store, run_id: int, campaign_id: int) -> None:
    """A finished run runs again (retry): undo `finish_run`, so that finishing it again counts once."""
    run = store.lock_run_tokens(run_id)
    campaign = store.lock_campaign_tokens(campaign_id)
    run, campaign = apply_reopen(run, campaign)
    store.write_run_tokens(run_id, run)
    store.write_campaign_tokens(campaign_id, campaign)
